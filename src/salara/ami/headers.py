"""AMI header lines as ``(name, value)`` pairs: the wire format of one message's text, pure."""

from __future__ import annotations

Headers = tuple[tuple[str, str], ...]


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
