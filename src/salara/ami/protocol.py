"""A sans-I/O AMI connection: bytes in, messages out; actions in, bytes out.

No sockets, no asyncio, no clock, in the style of h11: feed what the socket
read to :meth:`AMIConnection.receive_data`, then call
:meth:`AMIConnection.next_event` until it returns :data:`NEED_DATA`; turn an
:class:`~salara.ami.messages.Action` into bytes with :meth:`AMIConnection.send`.

Wire format (Asterisk Manager Interface, docs.asterisk.org "AMI v2
Specification"): a one-line greeting ``Asterisk Call Manager/X.Y.Z`` CR LF,
then messages of ``Name: value`` lines ending in CR LF, each message closed by
an empty line. Decisions that matter:

- Framing is done on bytes and whole messages are decoded at once, so a UTF-8
  character split across two reads survives; invalid UTF-8 becomes U+FFFD.
- A list action answers ``EventList: start``, then item events carrying its
  ActionID, then an event with ``EventList: Complete``. The items are folded
  into one :class:`Response`; the end is that header, never a guess from text.
- ``Command`` output arrives as ``Output:`` headers (Asterisk 14+) or, from
  older Asterisk, as ``Response: Follows`` with a raw body closed by
  ``--END COMMAND--``; both give ``Response.output``.
- Asterisk reads at most 1024 bytes per line and 128 headers per action
  (``main/manager.c``); longer actions are refused here, not truncated there.
- CR, LF and NUL are refused in every header name and value, so no field can
  smuggle a second action onto the wire.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from salara.ami.headers import parse_headers
from salara.ami.messages import Action, Event, Greeting, Message, Response
from salara.errors import LocalProtocolError, RemoteProtocolError
from salara.sansio import CLOSED as CLOSED
from salara.sansio import NEED_DATA as NEED_DATA
from salara.sansio import Sentinel as Sentinel

MAX_LINE_BYTES: Final = 1024
"""Longest action line (CR LF included) Asterisk reads whole."""
MAX_HEADERS: Final = 128
"""Most headers Asterisk keeps per action (``AST_MAX_MANHEADERS``)."""
DEFAULT_MAX_MESSAGE_BYTES: Final = 1 << 20
"""Largest incoming message accepted before the peer is deemed broken."""

_END = b"\r\n\r\n"
_FOLLOWS = b"Response: Follows"
_END_COMMAND = b"--END COMMAND--"
_FORBIDDEN = ("\r", "\n", "\0")
_FOLLOWS_HEADERS = frozenset({"response", "privilege", "actionid", "message"})


def check_value(value: str, what: str = "value") -> None:
    """Raise :class:`LocalProtocolError` if ``value`` holds CR, LF or NUL."""
    for char in _FORBIDDEN:
        if char in value:
            raise LocalProtocolError(f"{what} contains {char!r}: refused")


def _check_name(name: str) -> None:
    if not name or name != name.strip() or ":" in name:
        raise LocalProtocolError(f"invalid header name {name!r}")
    check_value(name, f"header name {name!r}")


def encode_action(action: Action) -> bytes:
    """The wire bytes of ``action``.

    Raises :class:`LocalProtocolError` (nothing is produced) when a name or
    value holds CR, LF or NUL, a line exceeds :data:`MAX_LINE_BYTES` or the
    action has more than :data:`MAX_HEADERS` headers.
    """
    lines = [("Action", action.name), ("ActionID", action.action_id), *action.headers]
    if len(lines) > MAX_HEADERS:
        raise LocalProtocolError(f"{action.name}: {len(lines)} headers, Asterisk keeps {MAX_HEADERS}")
    out = bytearray()
    for name, value in lines:
        _check_name(name)
        check_value(value, f"{name} value")
        line = f"{name}: {value}\r\n".encode()
        if len(line) > MAX_LINE_BYTES:
            raise LocalProtocolError(
                f"{action.name}: {name} line is {len(line)} bytes, Asterisk reads {MAX_LINE_BYTES}"
            )
        out += line
    out += b"\r\n"
    return bytes(out)


def parse_message(text: str) -> Event | Response:
    """Parse one message (without its closing blank line) into an Event or Response.

    A message that is neither (no ``Event``/``Response`` first header) becomes
    an :class:`Event` named ``""`` so that callers ignore it like any unknown
    event.
    """
    headers = parse_headers(text)
    if headers:
        first, value = headers[0]
        kind = first.lower()
        if kind == "event":
            return Event(value, headers)
        if kind == "response":
            return Response(value, headers)
    return Event("", headers)


def _parse_follows(raw: bytes) -> Response:
    """Parse an old-style ``Response: Follows`` Command answer (raw body)."""
    text = raw.decode("utf-8", "replace")
    body_end = text.rfind(_END_COMMAND.decode())
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
    return Response("Follows", tuple(headers))


class AMIConnection:
    """The state of one AMI connection, without I/O.

    ``max_message_bytes`` bounds the bytes buffered for one incoming message;
    past it :meth:`receive_data` raises :class:`RemoteProtocolError` (the
    caller should drop the connection).
    """

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._ready: deque[Message] = deque()
        self._lists: dict[str, tuple[Response, list[Event]]] = {}
        self._greeted = False
        self._closed = False
        self._max = max_message_bytes

    # -- sending -------------------------------------------------------------

    def send(self, action: Action) -> bytes:
        """Bytes to write for ``action``; see :func:`encode_action` for errors."""
        if self._closed:
            raise LocalProtocolError("connection closed")
        return encode_action(action)

    def forget(self, action_id: str) -> None:
        """Drop a half-received list (the caller gave up waiting for it)."""
        self._lists.pop(action_id, None)

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed."""
        if not data:
            self._closed = True
            return
        self._buffer += data
        self._frame()

    def next_event(self) -> Message | Sentinel:
        """The next complete message, or :data:`NEED_DATA` / :data:`CLOSED`."""
        if self._ready:
            return self._ready.popleft()
        return CLOSED if self._closed else NEED_DATA

    def drain(self) -> list[Message]:
        """Every complete message at once (a faster loop than :meth:`next_event`)."""
        out = list(self._ready)
        self._ready.clear()
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    def _frame(self) -> None:
        buffer = self._buffer
        if not self._greeted:
            newline = buffer.find(b"\r\n")
            if newline < 0:
                self._check_size(len(buffer))
                return
            self._greeted = True
            text = buffer[:newline].decode("utf-8", "replace")
            del buffer[: newline + 2]
            self._ready.append(Greeting(text))
        while True:
            end = buffer.rfind(_END)
            if end < 0:
                self._check_size(len(buffer))
                return
            if _FOLLOWS in buffer:
                if not self._frame_one():
                    return
                continue
            # Message boundaries are ASCII, so decoding all complete messages
            # in one go cannot split a character.
            text = buffer[:end].decode("utf-8", "replace")
            del buffer[: end + 4]
            for part in text.split("\r\n\r\n"):
                if part.startswith("Event: "):
                    # Events are the bulk of the stream: name now, headers on demand.
                    newline = part.find("\r\n")
                    name = part[7:newline] if newline >= 0 else part[7:]
                    self._deliver(Event(name.rstrip("\n"), text=part))
                elif part:
                    self._deliver(parse_message(part))
            return

    def _frame_one(self) -> bool:
        """Frame a single message (slow path, used around ``Response: Follows``)."""
        buffer = self._buffer
        while buffer.startswith(b"\r\n"):
            del buffer[:2]
        if buffer.startswith(_FOLLOWS):
            marker = buffer.find(_END_COMMAND)
            if marker < 0:
                self._check_size(len(buffer))
                return False
            end = buffer.find(b"\r\n", marker)
            if end < 0:
                return False
            raw = bytes(buffer[:end])
            # The old format closes with "--END COMMAND--" CR LF then a blank line.
            del buffer[: end + (4 if buffer[end : end + 4] == _END else 2)]
            self._deliver(_parse_follows(raw))
            return True
        end = buffer.find(_END)
        if end < 0:
            return False
        text = buffer[:end].decode("utf-8", "replace")
        del buffer[: end + 4]
        if text:
            self._deliver(parse_message(text))
        return True

    def _check_size(self, size: int) -> None:
        if size > self._max:
            raise RemoteProtocolError(f"AMI message exceeds {self._max} bytes")

    def _deliver(self, message: Event | Response) -> None:
        lists = self._lists
        if isinstance(message, Response):
            action_id = message.action_id
            if action_id is not None and (message.get("EventList") or "").lower() == "start":
                lists[action_id] = (message, [])
                return
            self._ready.append(message)
            return
        if lists:
            action_id = message.get("ActionID")
            if action_id is not None and action_id in lists:
                response, items = lists[action_id]
                items.append(message)
                if (message.get("EventList") or "").lower() == "complete":
                    del lists[action_id]
                    self._ready.append(response.with_events(items))
                return
        self._ready.append(message)
