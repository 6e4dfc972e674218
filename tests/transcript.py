"""Read the recorded Asterisk exchanges in ``tests/transcripts/``.

Each file is a sequence of blocks; a line ``>>> SENT ...`` or ``<<< RECV ...``
starts one, and the bytes up to the next marker (or ``###`` comment) line are
exactly what crossed the socket, less the one newline that separates blocks.
Every RECV block is one read from the socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DIR = Path(__file__).resolve().parent / "transcripts"
_MARKER = re.compile(rb"^(>>> SENT|<<< RECV)([^\n]*)\n", re.M)
_COMMENT = re.compile(rb"^### [^\n]*\n?", re.M)


@dataclass(frozen=True)
class Block:
    sent: bool
    """True for bytes salara's side sent, False for bytes it received."""
    data: bytes
    conn: str | None
    """The ``conn=N`` tag of multi-connection files (FastAGI), else None."""


def load(name: str) -> list[Block]:
    """The blocks of ``tests/transcripts/<name>`` in order."""
    raw = (DIR / name).read_bytes()
    markers = list(_MARKER.finditer(raw))
    blocks = []
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(raw)
        body = raw[marker.end() : end]
        comment = _COMMENT.search(body)
        if comment:
            body = body[: comment.start()]
        # One newline separates a block from the next marker or comment; the
        # file's last block has none after it.
        if (comment or end < len(raw)) and body.endswith(b"\n"):
            body = body[:-1]
        conn = re.search(rb"conn=(\d+)", marker.group(2))
        blocks.append(Block(marker.group(1) == b">>> SENT", body, conn.group(1).decode() if conn else None))
    return blocks


def received(name: str, conn: str | None = None) -> list[bytes]:
    """The RECV reads of a transcript (of one connection when ``conn`` is given)."""
    return [b.data for b in load(name) if not b.sent and (conn is None or b.conn == conn)]


def names(suffix: str = ".txt") -> list[str]:
    return sorted(p.name for p in DIR.glob(f"*{suffix}") if p.name != "README.md")
