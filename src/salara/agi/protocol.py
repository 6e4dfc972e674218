"""A sans-I/O FastAGI connection: bytes in, request and replies out; commands in, bytes out.

No sockets, no asyncio, no clock, in the style of h11 and of
:mod:`salara.ami.protocol`: feed what the socket read to
:meth:`AGIConnection.receive_data`, call :meth:`AGIConnection.next_event`
until it returns :data:`NEED_DATA`; turn a command into bytes with
:meth:`AGIConnection.send_command`.

Wire format (Asterisk ``res/res_agi.c``; every line ends in LF):

- On connect Asterisk sends the variable block: ``agi_<name>: <value>``
  lines closed by an empty line. The arguments of
  ``AGI(agi://host/script?x=1,arg1,arg2)`` arrive as ``agi_arg_1``,
  ``agi_arg_2``...
- Then each command is one line, answered by one reply:
  ``200 result=<r>[ (<data>)][ <more>]``, where ``more`` may hold
  ``endpos=<n>``; ``100 result=0 Trying...`` may come first (``GOSUB`` runs
  dialplan before its final reply); errors are ``510 Invalid or unknown
  command``, ``511 Command Not Permitted on a dead channel or intercept
  routine``, ``520 Invalid command syntax.  Proper usage not available.`` or
  the multi-line ``520-Invalid command syntax.  Proper usage follows:``, the
  usage text, ``520 End of proper usage.``.
- When the channel hangs up, Asterisk sends a lone ``HANGUP`` line on its own
  (FastAGI's stand-in for SIGHUP). It is not a reply: it sets
  :attr:`AGIConnection.hungup` and the command/reply pairing goes on. Commands
  still work on the dead channel; those that need a live one answer 511.

Decisions that matter:

- Framing is on bytes; whole lines are decoded (UTF-8, invalid bytes become
  U+FFFD), so a character split across two reads survives. A line longer than
  ``max_line_bytes`` is :class:`RemoteProtocolError`.
- Commands are formatted by :mod:`salara.agi.commands` (Asterisk's line and
  word limits, quoting, CR/LF/NUL refused before any byte is produced).
- Errors (:class:`~salara.errors.AGIError` and its subclasses) live in
  :mod:`salara.errors`, with every other error salara raises.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl, unquote

from salara.agi.commands import format_command
from salara.errors import AGICommandError, RemoteProtocolError
from salara.errors import AGIError as AGIError  # re-exported: code written before it moved imports it here
from salara.sansio import CLOSED as CLOSED
from salara.sansio import NEED_DATA as NEED_DATA
from salara.sansio import Sentinel as Sentinel

DEFAULT_MAX_LINE_BYTES: Final = 1 << 16
"""Longest incoming line accepted before the peer is deemed broken."""
MAX_VARIABLES: Final = 512
"""Most lines accepted in a variable block (Asterisk sends ~24 plus the arguments)."""
MAX_USAGE_LINES: Final = 1000
"""Most usage lines accepted in one multi-line ``520-`` reply."""

_STATUS = re.compile(r"(\d{3})([ -])(.*)")
_RESULT = re.compile(r"(\d{3}) result=(\S*)(?: (.*))?")
_ENDPOS = re.compile(r"(?:^|\s)endpos=(-?\d+)")


@dataclass(frozen=True, slots=True)
class AGIRequest:
    """The variable block Asterisk sends when a FastAGI session starts.

    Strings are as Asterisk sent them: a call without caller ID has
    ``callerid == "unknown"``. ``network_script`` is the path of
    ``agi_network_script`` (``route`` for ``route?x=1``), percent-decoded;
    ``query`` its parsed query (``{"x": "1"}``; a repeated key keeps the last
    value). ``args`` are ``agi_arg_1``, ``agi_arg_2``... in order.
    ``variables`` holds every line of the block, keys with their ``agi_``
    prefix (``variables["agi_dnid"]``).
    """

    network_script: str
    query: Mapping[str, str]
    request: str
    channel: str
    uniqueid: str
    callerid: str
    calleridname: str
    context: str
    extension: str
    priority: int
    args: tuple[str, ...]
    variables: Mapping[str, str]

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> AGIRequest:
        """Build from the block's ``name -> value`` pairs; a missing one gives ``""`` (priority 0).

        Raises :class:`RemoteProtocolError` if ``agi_priority`` is not an integer.
        """
        raw = dict(variables)
        script, _, query = raw.get("agi_network_script", "").partition("?")
        priority_text = raw.get("agi_priority", "0")
        try:
            priority = int(priority_text)
        except ValueError:
            raise RemoteProtocolError(f"agi_priority is not an integer: {priority_text!r}") from None
        numbered = []
        for name, value in raw.items():
            suffix = name.removeprefix("agi_arg_")
            if suffix != name and suffix.isdigit():
                numbered.append((int(suffix), value))
        return cls(
            network_script=unquote(script),
            query=MappingProxyType(dict(parse_qsl(query, keep_blank_values=True))),
            request=raw.get("agi_request", ""),
            channel=raw.get("agi_channel", ""),
            uniqueid=raw.get("agi_uniqueid", ""),
            callerid=raw.get("agi_callerid", ""),
            calleridname=raw.get("agi_calleridname", ""),
            context=raw.get("agi_context", ""),
            extension=raw.get("agi_extension", ""),
            priority=priority,
            args=tuple(value for _, value in sorted(numbered)),
            variables=MappingProxyType(raw),
        )


@dataclass(frozen=True, slots=True)
class AGIReply:
    """A final success reply: ``200 result=1 (data) endpos=1234``.

    ``result`` is the text after ``result=`` as sent: an integer for almost
    every command, but ``GET DATA`` answers the digits read (``"12#"``, or
    ``""``); see :attr:`result_int`. ``data`` is the text in parentheses
    (``None`` when there are none, ``""`` for ``()``); when the line ends in
    ``)`` everything from the first ``(`` is data, so a variable value holding
    parentheses survives. ``extra`` is what follows result and data
    (``"Gosub complete"``, ``"digit=5 endpos=1234"``); ``endpos`` the sample
    offset parsed out of it.
    """

    code: int
    result: str
    data: str | None = None
    endpos: int | None = None
    extra: str = ""

    @property
    def result_int(self) -> int | None:
        """``result`` as an integer, or None when it is not one (``GET DATA`` digits)."""
        try:
            return int(self.result)
        except ValueError:
            return None


AGIEvent = AGIRequest | AGIReply | AGICommandError
"""What :meth:`AGIConnection.next_event` yields; an error reply is an exception instance to raise."""


def parse_reply(line: str) -> AGIReply:
    """Parse a ``NNN result=...`` line (no LF); :class:`RemoteProtocolError` if it is not one."""
    match = _RESULT.fullmatch(line)
    if match is None:
        raise RemoteProtocolError(f"malformed AGI reply {line!r}")
    rest = match.group(3) or ""
    data = None
    if rest.startswith("("):
        if rest.endswith(")"):
            data, rest = rest[1:-1], ""
        elif (close := rest.find(") ")) > 0:
            data, rest = rest[1:close], rest[close + 2 :]
    endpos = _ENDPOS.search(rest)
    return AGIReply(
        code=int(match.group(1)),
        result=match.group(2),
        data=data,
        endpos=int(endpos.group(1)) if endpos else None,
        extra=rest.strip(),
    )


class AGIConnection:
    """The state of one FastAGI connection, without I/O.

    Events come in order: one :class:`AGIRequest`, then one
    :class:`AGIReply` or :class:`AGICommandError` per command sent. Commands
    may be pipelined (Asterisk reads them one after the other). A reply with
    no command outstanding, or a line that is no reply, raises
    :class:`RemoteProtocolError`; so does a line over ``max_line_bytes`` or a
    variable block over :data:`MAX_VARIABLES` lines. The caller should drop
    the connection after any of them.
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._events: deque[AGIEvent] = deque()
        self._variables: dict[str, str] | None = {}  # None once the block is complete
        self._outstanding: deque[str] = deque()  # names of commands awaiting a final reply
        self._usage: list[str] | None = None  # lines of a multi-line reply being read
        self._usage_head = (0, "")
        self._hungup = False
        self._closed = False
        self._broken = ""  # why reading stopped for good (a RemoteProtocolError was raised)
        self._max_line = max_line_bytes

    # -- sending -------------------------------------------------------------

    def send_command(self, name: str, *args: str | int) -> bytes:
        """Bytes to write for a command; see :func:`format_command` for errors."""
        data = format_command(name, *args)
        self._outstanding.append(name)
        return data

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed."""
        if not data:
            self._closed = True
            return
        if self._closed:
            return
        if self._broken:
            raise RemoteProtocolError(self._broken)
        buffer = self._buffer
        buffer += data
        start = 0
        try:
            while (end := buffer.find(b"\n", start)) >= 0:
                self._check_size(end - start)
                line = buffer[start:end].decode("utf-8", "replace")
                start = end + 1
                self._line(line.removesuffix("\r"))
            del buffer[:start]
            self._check_size(len(buffer))
        except RemoteProtocolError as exc:
            # Nothing more is read: the events before the bad line stay queued, the rest is dropped.
            self._broken = str(exc)
            buffer.clear()
            self._variables = self._usage = None
            raise

    def next_event(self) -> AGIEvent | Sentinel:
        """The next request or reply, or :data:`NEED_DATA` / :data:`CLOSED`."""
        if self._events:
            return self._events.popleft()
        return CLOSED if self._closed else NEED_DATA

    @property
    def hungup(self) -> bool:
        """True once Asterisk sent its ``HANGUP`` line: the channel is gone."""
        return self._hungup

    @property
    def closed(self) -> bool:
        """True once the peer closed its side."""
        return self._closed

    @property
    def buffered_bytes(self) -> int:
        """Bytes of a line not complete yet; never over ``max_line_bytes``."""
        return len(self._buffer)

    @property
    def held_lines(self) -> int:
        """Lines held for an event not complete yet: the variable block's, or a multi-line reply's.

        Never over :data:`MAX_VARIABLES` (the block) or :data:`MAX_USAGE_LINES` (a reply).
        """
        if self._variables is not None:
            return len(self._variables)
        return len(self._usage) if self._usage is not None else 0

    @property
    def outstanding(self) -> int:
        """Commands sent whose final reply has not arrived yet."""
        return len(self._outstanding)

    def _check_size(self, size: int) -> None:
        if size > self._max_line:
            raise RemoteProtocolError(f"AGI line exceeds {self._max_line} bytes")

    def _line(self, line: str) -> None:
        if self._variables is not None:
            self._variable(self._variables, line)
        elif self._usage is not None:
            self._usage_line(self._usage, line)
        elif line == "HANGUP":
            self._hungup = True
        elif line:  # Asterisk sends no empty lines here; tolerate them
            self._status(line)

    def _variable(self, variables: dict[str, str], line: str) -> None:
        if not line:
            self._variables = None
            self._events.append(AGIRequest.from_variables(variables))
            return
        name, sep, value = line.partition(":")
        if not sep or not name:
            raise RemoteProtocolError(f"not an AGI variable line: {line!r}")
        if len(variables) >= MAX_VARIABLES:
            raise RemoteProtocolError(f"AGI variable block exceeds {MAX_VARIABLES} lines")
        variables[name] = value.removeprefix(" ")

    def _usage_line(self, usage: list[str], line: str) -> None:
        code, text = self._usage_head
        if line.startswith(f"{code} "):
            self._usage = None
            self._finish(code, text, tuple(usage))
            return
        if len(usage) >= MAX_USAGE_LINES:
            raise RemoteProtocolError(f"AGI {code} reply exceeds {MAX_USAGE_LINES} lines")
        usage.append(line)

    def _status(self, line: str) -> None:
        match = _STATUS.fullmatch(line)
        if match is None:
            raise RemoteProtocolError(f"unexpected line from Asterisk: {line!r}")
        if not self._outstanding:
            raise RemoteProtocolError(f"AGI reply with no command outstanding: {line!r}")
        code, text = int(match.group(1)), match.group(3)
        if match.group(2) == "-":
            self._usage, self._usage_head = [], (code, text)
        elif 100 <= code < 200:
            pass  # intermediate ("100 result=0 Trying..."); the final reply follows
        elif 200 <= code < 300:
            self._outstanding.popleft()
            self._events.append(parse_reply(line))
        elif 400 <= code < 600:
            self._finish(code, text, ())
        else:
            raise RemoteProtocolError(f"unknown AGI status in {line!r}")

    def _finish(self, code: int, text: str, usage: tuple[str, ...]) -> None:
        command = self._outstanding.popleft()
        self._events.append(AGICommandError(code, text, usage, command))
