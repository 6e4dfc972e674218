"""The CRM routing lookup (SPEC §3 step 1): which extension the CRM names for a caller.

:class:`CrmLookup` asks; :class:`LookupFailed` says why there is no usable
answer. The router (:mod:`salara.routing.script`) bounds the lookup by its deadline
and falls back on the cache, the ``[route]`` table and the default.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from salara import fields
from salara.crm.client import MAX_ANSWER_BYTES, read_limited
from salara.logsafe import escape

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    """What the CRM said of a caller: the extension, and optionally the caller's name and a client state."""

    exten: str
    caller_name: str | None = None
    """For ``CALLERID(name)`` (:func:`salara.fields.caller_name`); None when not given or refused."""
    client_state: str | None = None
    """Echoed on the call's lifecycle events; None when not given or refused."""


class LookupFailed(Exception):
    """The CRM gave no usable destination; the message says why.

    ``definitive`` is true when the CRM answered properly that it names no
    one for this caller (404, or an answer without a usable ``key_word``): a
    working CRM, so it does not count against the circuit breaker, and a
    cached older answer must not override it.
    """

    def __init__(self, reason: str, *, definitive: bool = False) -> None:
        super().__init__(reason)
        self.definitive = definitive


class CrmLookup:
    """The CRM routing lookup (SPEC §3 step 1).

    ``dest_url`` ending in ``=`` (``...?phone=``): GET with the caller's
    number appended; otherwise POST ``{"phone": "<number>"}``. The JSON
    answer's ``key_word`` (string or integer) names the extension; its
    ``name_key`` (default ``caller_name``), if any, the caller's name, and its
    ``client_state`` a string for the call's events. Redirects
    are not followed; ``client``'s own timeout bounds each request, and the
    router bounds the lookup again by its deadline.
    """

    def __init__(self, client: aiohttp.ClientSession, url: str, key_word: str, name_key: str = "caller_name") -> None:
        self.client = client
        self.url = url
        self.key_word = key_word
        self.name_key = name_key

    async def lookup(self, caller: str) -> LookupAnswer:
        """What the CRM names for ``caller``; raises :class:`LookupFailed` or TimeoutError.

        A refused caller name or client state is logged and left out: the
        call is routed all the same.
        """
        try:
            if self.url.endswith("="):
                request = self.client.get(self.url + quote(caller, safe=""), allow_redirects=False)
            else:
                request = self.client.post(self.url, json={"phone": caller}, allow_redirects=False)
            async with request as response:
                body = await read_limited(response, MAX_ANSWER_BYTES)
        except aiohttp.ClientError as exc:
            raise LookupFailed(f"{type(exc).__name__}: {exc}") from None
        if response.status == 404:
            raise LookupFailed("HTTP 404: the CRM knows no one for this caller", definitive=True)
        if not 200 <= response.status < 300:
            raise LookupFailed(f"HTTP {response.status}")
        if body is None:
            raise LookupFailed(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            raise LookupFailed("answer is not JSON (or nested too deep)") from None
        value = answer.get(self.key_word) if isinstance(answer, dict) else None
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise LookupFailed(f"answer has no usable {self.key_word!r}", definitive=True)
        try:
            exten = fields.extension(self.key_word, str(value))
        except fields.FieldError as exc:
            raise LookupFailed(str(exc), definitive=True) from None
        return LookupAnswer(
            exten, self._caller_name(answer.get(self.name_key)), _client_state(answer.get("client_state"))
        )

    def _caller_name(self, value: object) -> str | None:
        if value is None or value == "":
            return None
        try:
            return fields.caller_name(self.name_key, value) if isinstance(value, str) else None
        except fields.FieldError as exc:
            log.warning("CRM's caller name refused (%s); the call is routed without it", escape(exc))
            return None


def _client_state(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if len(value.encode()) > fields.CLIENT_STATE_MAX_BYTES:
        log.warning("CRM's client_state over %d bytes left out", fields.CLIENT_STATE_MAX_BYTES)
        return None
    return value
