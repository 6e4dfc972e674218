"""``[webhook NAME]`` sections: event endpoints beside ``[url] dest_url_event``, and webhook secrets.

Pure, like :mod:`salara.config.schema`. Each section names one endpoint that
gets the event types in ``events`` (empty: every type of its payload), in
the ``compat`` or ``extended`` payload, signed with its ``secret``. The name
``default`` is taken: it is ``dest_url_event``'s, in the store and the API.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from salara.config.values import StrList
from salara.eventtypes import COMPAT_TYPES, EVENT_TYPES, LIFECYCLE_TYPES

WEBHOOK_SECTION: Final = "webhook "
"""Endpoint sections are ``[webhook NAME]``; the name keeps its case."""
WEBHOOK_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""What a ``[webhook NAME]`` may be called (``default`` excepted)."""
RESERVED_NAME: Final = "default"
MAX_SECRETS: Final = 2
"""Secrets of one endpoint at once: the new one and, during a rotation, the old one."""


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def check_secrets(value: str) -> str:
    """A ``secret`` or ``webhook_secret``: up to two secrets separated by spaces, each signing every request.

    A ``whsec_`` secret must go on in base64. Raises ValueError otherwise.
    """
    secrets = value.split()
    if len(secrets) > MAX_SECRETS:
        raise ValueError(f"at most {MAX_SECRETS} secrets (the new one and the old one, during a rotation)")
    for secret in secrets:
        if secret.startswith("whsec_"):
            try:
                base64.b64decode(secret[len("whsec_") :], validate=True)
            except binascii.Error:
                raise ValueError("a secret starting with whsec_ must go on in base64") from None
    return value


def _check_types(types: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in types if name not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an event type (one of: {', '.join(EVENT_TYPES)})")
    return types


def _check_url(url: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url, flags=re.IGNORECASE):
        raise ValueError("an http:// or https:// URL")
    return url


class Webhook(BaseModel):
    """``[webhook NAME]``: one event endpoint (module doc)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: Annotated[str, AfterValidator(_check_url)]
    events: Annotated[StrList, AfterValidator(_check_types)] = ()
    """Event types it gets; empty: every type of its payload."""
    payload: Annotated[Literal["compat", "extended"], BeforeValidator(_lower)] = "extended"
    secret: Annotated[str, AfterValidator(check_secrets)] = ""
    """Signs its requests (Standard Webhooks); two secrets, separated by a space, during a rotation."""
    timeout: float | None = Field(None, gt=0, le=300)
    """Seconds it has to answer a POST; unset: ``[general] curlopt_timeout``."""

    @model_validator(mode="after")
    def _compat_has_no_lifecycle(self) -> Webhook:
        if self.payload == "compat" and any(name in LIFECYCLE_TYPES for name in self.events):
            raise PydanticCustomError(
                "compat_lifecycle", "lifecycle events have no compat body: use payload = extended for them"
            )
        return self

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint gets events of ``event_type``."""
        if self.events:
            return event_type in self.events
        return self.payload == "extended" or event_type in COMPAT_TYPES

    def fields(self) -> dict[str, str]:
        """The section's keys as the config file writes them (for the config editor)."""
        values = {"url": self.url, "payload": self.payload}
        if self.events:
            values["events"] = ", ".join(self.events)
        if self.secret:
            values["secret"] = self.secret
        if self.timeout is not None:
            values["timeout"] = f"{self.timeout:g}"
        return values
