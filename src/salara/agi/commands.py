"""FastAGI commands as bytes Asterisk reads back unchanged: one line per command, LF-terminated.

Asterisk reads a command into a 2048-byte buffer (``AGI_BUF_LEN`` in
``res/res_agi.c``, so 2047 bytes with the LF) and splits it into at most 127
words (``MAX_ARGS`` - 1); a longer line would be cut and its tail run as a
second command, so it is refused here. CR, LF and NUL are refused in every
argument for the same reason, before any byte is produced.

Asterisk's command parser (``parse_args``) splits on space and tab, groups
with ``"`` and lets ``\\`` escape the next character, in quotes or not;
:func:`quote_arg` writes arguments it reads back unchanged. The commands
themselves are listed in Asterisk's "AGI Commands" documentation
(docs.asterisk.org).
"""

from __future__ import annotations

import re
from typing import Final

from salara.errors import LocalProtocolError

MAX_COMMAND_BYTES: Final = 2047
"""Longest command line, LF included, that Asterisk reads whole (``AGI_BUF_LEN`` - 1)."""
MAX_WORDS: Final = 127
"""Most words (command words plus arguments) Asterisk keeps (``MAX_ARGS`` - 1)."""

_FORBIDDEN = ("\r", "\n", "\0")
_NEEDS_QUOTES = frozenset(' \t"\\')
_COMMAND_NAME = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")


def check_arg(value: str) -> None:
    """Raise :class:`LocalProtocolError` if ``value`` holds CR, LF or NUL."""
    for char in _FORBIDDEN:
        if char in value:
            raise LocalProtocolError(f"AGI argument contains {char!r}: refused")


def quote_arg(value: str) -> str:
    """``value`` as one word for Asterisk's command parser.

    Left as it is unless it is empty or holds a space, tab, ``"`` or ``\\``;
    then it is put in double quotes with ``"`` and ``\\`` escaped by ``\\``.
    Raises :class:`LocalProtocolError` for CR, LF or NUL.

    >>> quote_arg("sim,9001,1"), quote_arg("routed by agi"), quote_arg('say "hi"'), quote_arg("")
    ('sim,9001,1', '"routed by agi"', '"say \\\\"hi\\\\""', '""')
    """
    check_arg(value)
    if value and _NEEDS_QUOTES.isdisjoint(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_command(name: str, *args: str | int) -> bytes:
    """The wire bytes of one command: ``format_command("GET VARIABLE", "CRMID")``.

    ``name`` is the command's words (letters, single spaces), sent unquoted;
    each argument is quoted as :func:`quote_arg` does, integers written in
    decimal. Raises :class:`LocalProtocolError` (nothing is produced) for a
    bad name, CR/LF/NUL in an argument, text that cannot be UTF-8, more than
    :data:`MAX_WORDS` words or a line over :data:`MAX_COMMAND_BYTES`.
    """
    if not _COMMAND_NAME.fullmatch(name):
        raise LocalProtocolError(f"invalid AGI command name {name!r}")
    words = [name, *(quote_arg(str(arg)) for arg in args)]
    if name.count(" ") + len(words) > MAX_WORDS:
        raise LocalProtocolError(f"{name}: more than {MAX_WORDS} words, Asterisk drops the rest")
    try:
        line = (" ".join(words) + "\n").encode()
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{name}: argument is not valid text ({exc.reason})") from None
    if len(line) > MAX_COMMAND_BYTES:
        raise LocalProtocolError(f"{name}: line is {len(line)} bytes, Asterisk reads {MAX_COMMAND_BYTES}")
    return line
