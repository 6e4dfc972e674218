"""Text from outside made safe for a log line or a terminal: control characters shown as escapes (pure).

Whatever salara logs or prints that it did not write itself (a FastAGI
variable block, a caller ID, an AMI message, a CRM's answer) may hold a line
feed that forges a log line of its own, a carriage return that overwrites
one on a terminal, or an escape sequence a terminal obeys. :func:`escape`
is applied where such text reaches a log message or the command line's
output; what is stored keeps the text as received.
"""

from __future__ import annotations

from typing import Final

_NAMED: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_CONTROLS: Final = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
"""C0, DEL, C1, and the Unicode line and paragraph separators."""
_TABLE: Final = {
    code: _NAMED.get(chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _CONTROLS
}


def escape(text: object) -> str:
    r"""``str(text)`` with every control character shown as a Python-style escape, on one line.

    TAB, LF and CR become ``\t``, ``\n``, ``\r``; the other C0 characters,
    DEL and the C1 characters ``\xNN``; U+2028 and U+2029 ``\u2028`` and
    ``\u2029``. Everything else (any other letter, a backslash) is kept, so
    ordinary text reads as it is; the result is for reading, not for
    parsing back. Raises nothing (but what ``str(text)`` raises).

    >>> print(escape("route\nsalara: forged line"))
    route\nsalara: forged line
    >>> escape("5552001\rFAKE\x1b[2J\u2028")
    '5552001\\rFAKE\\x1b[2J\\u2028'
    >>> escape("Иван Петров")
    'Иван Петров'
    """
    return str(text).translate(_TABLE)
