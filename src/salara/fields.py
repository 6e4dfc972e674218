"""What Asterisk accepts for each kind of field that salara puts into AMI or AGI.

Every value that reaches an AMI action or an AGI command is checked here
first, in addition to the protocol layer's CR/LF/NUL refusal. Limits follow
Asterisk: ``AST_MAX_EXTENSION`` and ``AST_MAX_CONTEXT`` are 80 bytes,
channel names are ``Tech/resource``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from salara.errors import SalaraError

MAX_EXTENSION: Final = 79
MAX_CONTEXT: Final = 79
"""``AST_MAX_EXTENSION`` and ``AST_MAX_CONTEXT`` are 80-byte buffers with the NUL:
Asterisk would silently cut an 80th byte off, and dial or query another name."""
SPECIAL_EXTENSIONS: Final = frozenset({"h", "i", "t", "s", "o", "a", "T", "e"})
"""Asterisk's special extensions (hangup, invalid, timeout, start, operator, ``*`` in
voicemail, absolute timeout, exception): a call sent to one runs the handler of that
event in the context, so no destination, number or extension may name one."""
MAX_CHANNEL: Final = 80
"""``AST_CHANNEL_NAME``."""
MAX_MESSAGE_BYTES: Final = 900
CLIENT_STATE_MAX_BYTES: Final = 1024
"""Longest CRM ``client_state`` kept (``/v1/calls``, a routing answer), in bytes of UTF-8."""
MAX_CALLER_NAME: Final = 64
"""Characters of a caller name salara sets (``CALLERID(name)``); phones show fewer."""
"""A ``MessageSend`` body must fit in one 1024-byte AMI line with its header."""

# An extension to dial or query: digits, letters and the dial-string signs
# Asterisk keeps literally. No leading "_": that would make it a pattern.
_EXTENSION = re.compile(r"[0-9A-Za-z*#+][0-9A-Za-z*#+._\-]*")
_CONTEXT = re.compile(r"[0-9A-Za-z_\-][0-9A-Za-z_.\-]*")
_CHANNEL = re.compile(r"[A-Za-z][A-Za-z0-9_]*/[!-~]+")
_ENDPOINT = re.compile(r"[0-9A-Za-z_.+\-@]+")
# Control characters, and lone UTF-16 surrogates (JSON "\ud800"), which no
# UTF-8 line can carry.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


class FieldError(SalaraError):
    """A request field holds a value Asterisk would not accept. Names the field."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.field = name
        self.reason = reason


def _check(name: str, value: str, pattern: re.Pattern[str], limit: int, kind: str) -> str:
    if not value:
        raise FieldError(name, "is empty")
    if _CONTROL.search(value):
        raise FieldError(name, "contains a control character (CR, LF, NUL...) or a lone surrogate")
    if len(value.encode()) > limit:
        raise FieldError(name, f"is longer than {limit} bytes")
    if not pattern.fullmatch(value):
        raise FieldError(name, f"is not a valid {kind}")
    return value


def extension(name: str, value: str) -> str:
    """An extension or number, e.g. ``8001``, ``+4930123``, ``*97``.

    Raises :class:`FieldError` naming ``name`` also for one of
    :data:`SPECIAL_EXTENSIONS` (the rule of a CRM's routing answer, a
    configured destination and every request field alike).
    """
    if value in SPECIAL_EXTENSIONS:
        raise FieldError(name, f"{value!r} is one of Asterisk's special extensions (h, i, t, s, o, a, T, e)")
    return _check(name, value, _EXTENSION, MAX_EXTENSION, "extension or number")


def context(name: str, value: str) -> str:
    """A dialplan context name, e.g. ``from-internal``."""
    return _check(name, value, _CONTEXT, MAX_CONTEXT, "dialplan context")


def channel(name: str, value: str) -> str:
    """A channel name, e.g. ``PJSIP/8003-00000020`` or ``Local/9999@sim-0000000a;1``."""
    return _check(name, value, _CHANNEL, MAX_CHANNEL, "channel name (Tech/resource)")


def endpoint(name: str, value: str) -> str:
    """A PJSIP endpoint (or chan_sip peer) name, e.g. ``8001``."""
    return _check(name, value, _ENDPOINT, MAX_EXTENSION, "endpoint name")


def message_text(name: str, value: str) -> str:
    """Text of a SIP MESSAGE: one line (AMI cannot carry CR/LF), tabs allowed."""
    if _CONTROL.search(value):
        raise FieldError(name, "contains a control character (CR, LF, NUL...) or a lone surrogate")
    if len(value.encode()) > MAX_MESSAGE_BYTES:
        raise FieldError(name, f"is longer than {MAX_MESSAGE_BYTES} bytes")
    return value


_CALLER_NAME_REFUSED = re.compile(r'["<>\\\x00-\x1f\x7f-\x9f\ud800-\udfff]')


def caller_name(name: str, value: str) -> str:
    """A caller name for ``CALLERID(name)``, e.g. ``Anna Schmidt (ACME)``.

    Refused: empty, over :data:`MAX_CALLER_NAME` characters, quotes, ``<>``,
    backslashes and control characters (C0, DEL, C1): they would change how
    Asterisk reads the caller id (``"name" <number>``) or what a phone shows.
    """
    if not value.strip():
        raise FieldError(name, "is empty")
    if len(value) > MAX_CALLER_NAME:
        raise FieldError(name, f"is longer than {MAX_CALLER_NAME} characters")
    if _CALLER_NAME_REFUSED.search(value):
        raise FieldError(name, "contains a quote, <, >, a backslash or a control character")
    return value


def variable_problems(variables: Mapping[str, str], prefix: str) -> list[str]:
    """The names in ``variables`` a client may not set: any not starting with ``prefix``, any starting with ``_``.

    An allow-list: Asterisk reads many channel variables as instructions
    (``BRIDGE_FEATURES`` gives a party the transfer key, ``TRANSFER_CONTEXT``
    says where it may dial, a leading ``_``/``__`` passes one on to every
    channel the call creates), and new ones come with new versions. Only
    names of the CRM's own namespace, ``[api] variable_prefix``, get through.
    """
    return [name for name in variables if name.startswith("_") or not name.startswith(prefix)]
