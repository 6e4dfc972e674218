"""Call recordings, the pure part: file names, formats, signed links.

A call salara records is recorded by Asterisk's ``MixMonitor`` (option ``b``:
only while bridged, so the file's length is the talk time) into
``salara-rec-<call id>.<format>`` in Asterisk's monitor directory (a
relative ``MixMonitor`` file name is taken relative to it). The call id is
the Linkedid; a name is built only from ids of ``[A-Za-z0-9._-]`` (no ``/``,
no ``..`` alone), anything else is refused (:class:`RecordingError`).

A signed link lets a CRM fetch a recording without headers (Bitrix24 fetches
``RECORD_URL`` plainly)::

    /v1/recordings/<call id>?expires=<Unix s>&signature=<hex HMAC-SHA256>

over ``recording\\n<call id>\\n<expires>`` with salara's own key (kept in its
state directory, never a token's hash).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from salara.calls.call import Call

PREFIX: Final = "salara-rec-"
"""What every file salara asks for starts with (retention deletes only those)."""
SAFE_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A call id a file name may be built of (the ``/v1`` call id pattern)."""
FORMATS: Final[dict[str, tuple[str, str]]] = {
    "wav": ("wav", "audio/wav"),
    "wav49": ("WAV", "audio/wav"),
    "gsm": ("gsm", "audio/x-gsm"),
    "ulaw": ("ulaw", "audio/basic"),
    "alaw": ("alaw", "audio/x-alaw-basic"),
}
"""``[recordings] format`` (an Asterisk format name) -> (the extension Asterisk writes, the content type).

Asterisk picks the format by the extension ``MixMonitor`` is given and
writes the format's first extension (``wav49`` writes ``.WAV``).
"""
NAME: Final = re.compile(r"salara-rec-([A-Za-z0-9._-]{1,64})\.(wav|WAV|gsm|ulaw|alaw)")
"""The name of a file salara asked for: group 1 the call id, 2 the extension."""


class RecordingError(ValueError):
    """A call id no recording file may be named after."""


def safe_id(call_id: str) -> str:
    """``call_id`` if a file may be named after it; else :class:`RecordingError`.

    >>> safe_id("1733112345.12")
    '1733112345.12'
    >>> safe_id("../etc/passwd")
    Traceback (most recent call last):
    ...
    salara.calls.recording.RecordingError: call id '../etc/passwd' cannot name a file (only A-Z a-z 0-9 . _ -)
    """
    if not SAFE_ID.fullmatch(call_id) or call_id in (".", ".."):
        raise RecordingError(f"call id {call_id!r} cannot name a file (only A-Z a-z 0-9 . _ -)")
    return call_id


def mixmonitor_file(call_id: str, fmt: str) -> str:
    """The file name given to ``MixMonitor`` (its extension is the format's name): ``salara-rec-<id>.<fmt>``."""
    return f"{PREFIX}{safe_id(call_id)}.{fmt}"


def file_name(call_id: str, fmt: str) -> str:
    """The file Asterisk writes for :func:`mixmonitor_file` (``wav49`` -> ``.WAV``)."""
    return f"{PREFIX}{safe_id(call_id)}.{FORMATS[fmt][0]}"


def content_type(fmt: str) -> str:
    """The HTTP content type of a recording in format ``fmt`` (``audio/wav``...)."""
    return FORMATS[fmt][1]


def _message(call_id: str, expires: int) -> bytes:
    return f"recording\n{call_id}\n{expires}".encode()


def signature(key: bytes, call_id: str, expires: int) -> str:
    """Hex HMAC-SHA256 of a recording link: call ``call_id``, valid until ``expires`` (Unix s)."""
    return hmac.new(key, _message(call_id, expires), hashlib.sha256).hexdigest()


def signed_path(key: bytes, call_id: str, expires: int) -> str:
    """``/v1/recordings/<id>?expires=<s>&signature=<hex>`` (the id is safe: nothing to escape)."""
    return f"/v1/recordings/{safe_id(call_id)}?expires={expires}&signature={signature(key, call_id, expires)}"


def signature_problem(key: bytes, call_id: str, expires: str | None, given: str | None, now: float) -> str | None:
    """Why a signed link is refused (None: it is good): missing parts, expired at ``now``, or a wrong signature.

    >>> key = b"k" * 32
    >>> good = signature(key, "c1", 2000)
    >>> signature_problem(key, "c1", "2000", good, 1999.0) is None
    True
    >>> signature_problem(key, "c1", "2000", good, 2000.5)
    'the link expired'
    >>> signature_problem(key, "c2", "2000", good, 1999.0)
    'the signature does not match'
    """
    if not expires or not given:
        return "a signed link needs both expires and signature"
    if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
        return "expires must be Unix seconds"
    seconds = int(expires)
    if not hmac.compare_digest(signature(key, call_id, seconds), given.lower()):
        return "the signature does not match"
    if now > seconds:
        return "the link expired"
    return None


def recording_url(public_url: str, key: bytes, call: Call, ended_at: float, ttl_s: float) -> str | None:
    """The signed link ``call.ended`` carries: under ``public_url``, valid ``ttl_s`` after the end.

    None without ``public_url``, for a call salara did not record, and for
    one never answered (``MixMonitor`` ``b`` wrote nothing then).
    """
    if not public_url or call.recording is None or call.answered_at is None:
        return None
    expires = int(ended_at + ttl_s)
    return public_url.rstrip("/") + signed_path(key, call.id, expires)
