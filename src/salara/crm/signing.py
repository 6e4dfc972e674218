"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec v1).

Every event is an HTTP ``POST`` of its JSON body to ``dest_url_event`` with
``Content-Type: application/json`` and the headers of Standard Webhooks:

- ``webhook-id``: the event's id, the same on every attempt, so the CRM can
  drop duplicates (delivery is at-least-once); always sent;
- ``webhook-timestamp``: the attempt's Unix time in seconds; always sent;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``,
  only when a secret is configured; during a rotation (two secrets in the
  setting, separated by a space) one signature per secret, separated by a
  space, as the spec allows, so the CRM verifies with either.

The secret: ``whsec_<base64>`` (the form Standard Webhooks libraries
generate) is base64-decoded into the HMAC key; any other string is used as
its UTF-8 bytes, so an admin can put a plain password in ``salara.conf`` and
the CRM uses the same string. :func:`verify` is the CRM side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Final

SECRET_PREFIX: Final = "whsec_"
SIGNATURE_VERSION: Final = "v1"


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: base64-decoded after ``whsec_``, else its UTF-8 bytes.

    Raises ValueError for ``whsec_`` followed by something that is not base64.
    """
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            raise ValueError("a webhook secret starting with whsec_ must go on in base64") from None
    return secret.encode()


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    return _signature(secret_key(secret), msg_id, timestamp, body)


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when ``headers`` carry a valid signature of ``body`` made with ``secret``.

    False when a header is missing, the timestamp is more than
    ``tolerance_s`` seconds away from ``now`` (replay protection), or no
    ``v1`` signature of the space-separated list matches. Header names are
    matched case-insensitively.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    signatures = lowered.get("webhook-signature", "")
    try:
        timestamp = int(lowered.get("webhook-timestamp", ""))
    except ValueError:
        return False
    if not msg_id or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, msg_id, timestamp, body).encode()
    return any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures.split())


def secret_keys(setting: str) -> tuple[bytes, ...]:
    """The HMAC keys of a secret setting: one per space-separated secret (none when empty).

    Raises ValueError as :func:`secret_key`.
    """
    return tuple(secret_key(secret) for secret in setting.split())


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 24 random bytes in base64 (``salara webhook secret``)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def webhook_headers(key: bytes | Sequence[bytes] | None, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one POST, signed with ``key`` (or each of several keys); None or none: unsigned."""
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    keys = () if key is None else (key,) if isinstance(key, bytes) else key
    if keys:
        headers["webhook-signature"] = " ".join(_signature(one, msg_id, timestamp, body) for one in keys)
    return headers
