"""AMI header lines as ``(name, value)`` pairs, both ways: the wire format of one message's text, pure.

Parsing follows what Asterisk writes (``main/manager.c``: ``Name: value``
CR LF lines); encoding follows what it reads: at most :data:`MAX_HEADERS`
headers of at most :data:`MAX_LINE_BYTES` bytes each, and no CR, LF or NUL
anywhere, so that no field can smuggle a second action onto the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Final, Literal

from salara.errors import LocalProtocolError

Headers = tuple[tuple[str, str], ...]

MAX_LINE_BYTES: Final = 1024
"""Longest action line (CR LF included) Asterisk reads whole."""
MAX_HEADERS: Final = 128
"""Most headers Asterisk keeps per action (``AST_MAX_MANHEADERS``)."""

_FORBIDDEN = ("\r", "\n", "\0")
_FOLLOWS_HEADERS = frozenset({"response", "privilege", "actionid", "message"})
_END_COMMAND = "--END COMMAND--"


def _split_header(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(": ")
    if sep:
        return name, value
    name, sep, value = line.partition(":")
    return (name, value.lstrip()) if sep else ("", line)


def parse_headers(text: str) -> Headers:
    """The ``(name, value)`` pairs of one message's text, in order.

    Lines end in CR LF, but some Asterisk answers put a bare LF at the end of
    a value ("Message: Unable to retrieve endpoint 9999\\n"): both split.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    pairs = tuple(tuple(line.split(": ", 1)) for line in lines)
    # Fast path: every line is "Name: value" (one C call per line).
    if min(map(len, pairs)) == 2:
        return pairs  # type: ignore[return-value]
    return tuple(_split_header(line) for line in lines if line)


class Lookup(Enum):
    UNSURE = "UNSURE"


UNSURE: Final = Lookup.UNSURE
"""What :func:`find_header` answers when only a full parse can tell."""

_NEEDLES: dict[str, tuple[str, str, int]] = {}
"""Header name -> its line start as written and lowered, and that length (0: the first header, never looked for)."""
_MAX_NEEDLES: Final = 512  # names come from code; a bound all the same


def _needles(name: str) -> tuple[str, str, int]:
    lowered = name.lower()
    needles = ("", "", 0) if lowered == "event" else ("\n" + name + ": ", "\n" + lowered + ":", len(name) + 3)
    if len(_NEEDLES) < _MAX_NEEDLES:
        _NEEDLES[name] = needles
    return needles


def find_header(text: str, lowered: str, name: str) -> str | Literal[Lookup.UNSURE] | None:
    """The first value of header ``name`` in one message's ``text``, found without parsing every line.

    ``lowered`` is ``text.lower()``, of the same length (the caller checks). Answers exactly what looking ``name`` up
    (any case, first wins) in :func:`parse_headers` of ``text`` answers,
    where it can be sure: the value, None when no line is ``name``, or
    :data:`UNSURE` (the first line of that name spells it in another case or
    without the space, or ``name`` is ``Event``, which an event's first line
    holds): then parse.
    """
    exact, any_case, size = _NEEDLES.get(name) or _needles(name)
    if not size:
        return UNSURE
    at = lowered.find(any_case)
    if at < 0:
        return None  # no line's name lowers to name: absent, in any case
    if not text.startswith(exact, at):
        return UNSURE  # the first line of that name is spelt otherwise: parse reads it
    start = at + size
    end = text.find("\n", start)
    if end < 0:
        return text[start:]  # the last line: no line end after it
    return text[start : end - 1] if end > start and text[end - 1] == "\r" else text[start:end]


def follows_headers(text: str) -> Headers:
    """The headers of an old-style ``Response: Follows`` Command answer (Asterisk before 14).

    ``text`` runs from ``Response: Follows`` to the body's ``--END COMMAND--``
    (or its end). The leading ``Response``/``Privilege``/``ActionID``/``Message``
    lines are headers; every body line, blank ones included, becomes an
    ``Output`` header, as Asterisk 14+ sends them.
    """
    body_end = text.rfind(_END_COMMAND)
    if body_end >= 0:
        text = text[:body_end]
    headers: list[tuple[str, str]] = []
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        # Only these lead the raw body; an output line like "Channel: X" is output.
        name, sep, value = lines[index].partition(": ")
        if not sep or name.lower() not in _FOLLOWS_HEADERS:
            break
        headers.append((name, value))
        index += 1
    body = lines[index:]
    if body and body[-1] == "":
        body.pop()
    headers.extend(("Output", line) for line in body)
    return tuple(headers)


def check_value(value: str, what: str = "value") -> None:
    """Raise :class:`LocalProtocolError` if ``value`` holds CR, LF or NUL."""
    for char in _FORBIDDEN:
        if char in value:
            raise LocalProtocolError(f"{what} contains {char!r}: refused")


def _check_name(name: str) -> None:
    if not name or name != name.strip() or ":" in name:
        raise LocalProtocolError(f"invalid header name {name!r}")
    check_value(name, f"header name {name!r}")


def encode_headers(lines: Sequence[tuple[str, str]], what: str) -> bytes:
    """The wire bytes of one action's header lines, closed by the empty line.

    ``what`` names the action in errors. Raises :class:`LocalProtocolError`
    (nothing is produced) when a name or value holds CR, LF or NUL, a line
    exceeds :data:`MAX_LINE_BYTES` or there are more than :data:`MAX_HEADERS`.
    """
    if len(lines) > MAX_HEADERS:
        raise LocalProtocolError(f"{what}: {len(lines)} headers, Asterisk keeps {MAX_HEADERS}")
    out = bytearray()
    for name, value in lines:
        _check_name(name)
        check_value(value, f"{name} value")
        line = f"{name}: {value}\r\n".encode()
        if len(line) > MAX_LINE_BYTES:
            raise LocalProtocolError(f"{what}: {name} line is {len(line)} bytes, Asterisk reads {MAX_LINE_BYTES}")
        out += line
    out += b"\r\n"
    return bytes(out)
