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
- Some AMI proxies write LF-only line ends: a message also ends at CR LF LF or
  LF LF (the leftmost end first), never at LF CR LF, which is a value's own
  bare LF before its CR LF ("Message: Unable to retrieve endpoint 9999\\n").
  Where a stream is cut never changes what comes out.
- A list action answers ``EventList: start``, then item events carrying its
  ActionID, then an event with ``EventList: Complete``. The items are folded
  into one :class:`Response`; the end is that header, never a guess from text.
  Lists are capped and forgettable (:class:`ListCollector`); a list over its
  cap comes out as an :class:`~salara.errors.AMIListOverflow` message.
- ``Command`` output arrives as ``Output:`` headers (Asterisk 14+) or, from
  older Asterisk, as ``Response: Follows`` with a raw body closed by
  ``--END COMMAND--``; both give ``Response.output``. While such a body is
  held, :attr:`AMIConnection.awaiting_body` says so, for the caller to bound.
- Asterisk reads at most 1024 bytes per line and 128 headers per action
  (``main/manager.c``); longer actions are refused here, not truncated there.
  CR, LF and NUL are refused in every header name and value, so no field can
  smuggle a second action onto the wire (:mod:`salara.ami.headers`).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from salara.ami.headers import MAX_HEADERS as MAX_HEADERS  # re-exported: Asterisk's limits, for callers
from salara.ami.headers import MAX_LINE_BYTES as MAX_LINE_BYTES
from salara.ami.headers import encode_headers, follows_headers, parse_headers
from salara.ami.messages import Action, Event, Greeting, Message, Response
from salara.errors import AMIListOverflow, LocalProtocolError, RemoteProtocolError
from salara.sansio import CLOSED as CLOSED
from salara.sansio import NEED_DATA as NEED_DATA
from salara.sansio import Sentinel as Sentinel

DEFAULT_MAX_MESSAGE_BYTES: Final = 1 << 20
"""Largest incoming message accepted before the peer is deemed broken."""
DEFAULT_MAX_LIST_ITEMS: Final = 50_000
"""Most items one list answer may hold (a big PBX's CoreShowChannels is a few thousand)."""
DEFAULT_MAX_LIST_BYTES: Final = 32 << 20
"""Most bytes of items (their wire text) one list answer may hold."""
MAX_OPEN_LISTS: Final = 256
"""Most lists collected at once; salara has a handful of list actions in flight."""
MAX_DISCARDED_LISTS: Final = 1024
"""Most given-up ActionIDs remembered so that their late items are discarded."""

_END = b"\r\n\r\n"
_TERMINATOR = re.compile(rb"\r\n\r\n|\r?\n\n")
"""A message ends at an empty line: CR LF CR LF, or LF-only (CR LF LF, LF LF); never LF CR LF (a value's bare LF)."""
_TEXT_TERMINATOR = re.compile(r"\r\n\r\n|\r?\n\n")
_FOLLOWS = b"Response: Follows"
_END_COMMAND = b"--END COMMAND--"


def encode_action(action: Action) -> bytes:
    """The wire bytes of ``action``: ``Action``, ``ActionID``, its headers, the empty line.

    Raises :class:`LocalProtocolError` (nothing is produced) when a name or
    value holds CR, LF or NUL, a line exceeds :data:`MAX_LINE_BYTES` or the
    action has more than :data:`MAX_HEADERS` headers.
    """
    return encode_headers([("Action", action.name), ("ActionID", action.action_id), *action.headers], action.name)


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


@dataclass(slots=True)
class _OpenList:
    response: Response
    items: list[Event] = field(default_factory=list)
    size_bytes: int = 0


class ListCollector:
    """The list answers being collected on one connection, within caps.

    - A list over ``max_items`` items or ``max_bytes`` bytes, or one past
      :data:`MAX_OPEN_LISTS` lists at once, is dropped and reported as an
      :class:`~salara.errors.AMIListOverflow` for its ActionID.
    - A list the caller gave up on (:meth:`forget`: the action timed out or
      was cancelled) is dropped at once.
    - The rest of a dropped list is discarded as it arrives, up to its
      Complete event; so is a list that starts after its action was given up.
      At most :data:`MAX_DISCARDED_LISTS` such ActionIDs are remembered (the
      oldest goes first; its late items would then come out as plain events).
    """

    __slots__ = ("_discarding", "_forgotten", "_max_bytes", "_max_items", "_open")

    def __init__(self, *, max_items: int = DEFAULT_MAX_LIST_ITEMS, max_bytes: int = DEFAULT_MAX_LIST_BYTES) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("list caps must be positive")
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._open: dict[str, _OpenList] = {}
        self._discarding: dict[str, None] = {}  # lists started but given up: their items are dropped
        self._forgotten: dict[str, None] = {}  # actions given up before any answer came

    @property
    def collecting(self) -> bool:
        """True while some list is open or being discarded (list items may arrive)."""
        return bool(self._open or self._discarding)

    def owns(self, action_id: str) -> bool:
        """True when events carrying ``action_id`` are items of a list, kept or discarded."""
        return action_id in self._open or action_id in self._discarding

    def start(self, action_id: str, response: Response) -> AMIListOverflow | None:
        """A ``Response`` with ``EventList: start`` arrived: open its list (or discard it, see above)."""
        if action_id in self._forgotten or action_id in self._discarding:
            self._forgotten.pop(action_id, None)
            self._discard(action_id)
            return None
        if len(self._open) >= MAX_OPEN_LISTS and action_id not in self._open:
            self._discard(action_id)
            return AMIListOverflow(action_id, f"more than {MAX_OPEN_LISTS} lists open at once")
        self._open[action_id] = _OpenList(response)  # a repeated start begins the list anew
        return None

    def item(self, action_id: str, event: Event, text: str) -> Response | AMIListOverflow | None:
        """Take one item of list ``action_id`` (:meth:`owns` is true); ``text`` is its wire text.

        Returns the whole list as a :class:`Response` once ``event`` is its
        Complete event, an :class:`AMIListOverflow` when ``event`` would take
        the list over a cap (the list is dropped), None otherwise.
        """
        complete = (event.get("EventList") or "").lower() == "complete"
        if action_id in self._discarding:
            if complete:
                del self._discarding[action_id]
            return None
        pending = self._open[action_id]
        if complete:
            del self._open[action_id]
            pending.items.append(event)
            return pending.response.with_events(pending.items)
        size = len(text) if text.isascii() else len(text.encode())
        if len(pending.items) >= self._max_items or pending.size_bytes + size > self._max_bytes:
            del self._open[action_id]
            self._discard(action_id)
            return AMIListOverflow(action_id, f"over {self._max_items} items or {self._max_bytes} bytes")
        pending.items.append(event)
        pending.size_bytes += size
        return None

    def forget(self, action_id: str) -> None:
        """The caller gave up on action ``action_id``: drop its list now, discard what is still to come."""
        if self._open.pop(action_id, None) is not None or action_id in self._discarding:
            self._discard(action_id)
        elif action_id not in self._forgotten:
            if len(self._forgotten) >= MAX_DISCARDED_LISTS:
                del self._forgotten[next(iter(self._forgotten))]
            self._forgotten[action_id] = None

    def answered(self, action_id: str) -> None:
        """A plain (non-list) answer to ``action_id`` arrived: nothing of it is left to discard."""
        self._forgotten.pop(action_id, None)

    def sizes(self) -> dict[str, tuple[int, int]]:
        """ActionID -> ``(items, bytes)`` of every list being collected."""
        return {action_id: (len(lst.items), lst.size_bytes) for action_id, lst in self._open.items()}

    def _discard(self, action_id: str) -> None:
        self._discarding.pop(action_id, None)
        if len(self._discarding) >= MAX_DISCARDED_LISTS:
            del self._discarding[next(iter(self._discarding))]
        self._discarding[action_id] = None


class AMIConnection:
    """The state of one AMI connection, without I/O.

    ``max_message_bytes`` bounds the bytes buffered for one incoming message;
    past it :meth:`receive_data` raises :class:`RemoteProtocolError` (the
    caller should drop the connection). ``max_list_items`` and
    ``max_list_bytes`` cap each list answer; a list over either is dropped and
    :meth:`next_event` yields an :class:`~salara.errors.AMIListOverflow` for
    its ActionID (the connection goes on).
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_list_items: int = DEFAULT_MAX_LIST_ITEMS,
        max_list_bytes: int = DEFAULT_MAX_LIST_BYTES,
    ) -> None:
        self._buffer = bytearray()
        self._ready: deque[Message] = deque()
        self._lists = ListCollector(max_items=max_list_items, max_bytes=max_list_bytes)
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
        """The caller gave up on action ``action_id`` (timed out, cancelled, link lost).

        A list being collected for it is dropped at once; its items still to
        come, and a list that only starts later, are discarded as they arrive.
        """
        self._lists.forget(action_id)

    def open_lists(self) -> dict[str, tuple[int, int]]:
        """ActionID -> ``(items, bytes)`` of every list answer being collected right now."""
        return self._lists.sizes()

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

    @property
    def awaiting_body(self) -> bool:
        """True while an old ``Response: Follows`` body is held, its ``--END COMMAND--`` not yet read.

        Nothing behind it can come out before that marker. Asterisk writes the
        body at once after its head, so a caller with a clock bounds this wait
        (:data:`salara.ami.client.FOLLOWS_BODY_TIMEOUT_S`) and drops the link
        when it lasts; without a clock the bound is ``max_message_bytes``.
        """
        return self._buffer.startswith(_FOLLOWS)

    def _frame(self) -> None:
        buffer = self._buffer
        if not self._greeted:
            newline = buffer.find(b"\n")
            if newline < 0:
                self._check_size(len(buffer))
                return
            self._greeted = True
            text = buffer[:newline].decode("utf-8", "replace").removesuffix("\r")
            del buffer[: newline + 1]
            self._ready.append(Greeting(text))
        while _FOLLOWS in buffer:
            if not self._frame_one():
                return
        if b"\n\n" in buffer:
            # Some message ends LF-only (an AMI proxy): split exactly, leftmost end first.
            last = max(_TERMINATOR.finditer(buffer), key=lambda match: match.end(), default=None)
            if last is None:
                self._check_size(len(buffer))
                return
            text = buffer[: last.start()].decode("utf-8", "replace")
            del buffer[: last.end()]
            parts = _TEXT_TERMINATOR.split(text)
        else:
            end = buffer.rfind(_END)
            if end < 0:
                self._check_size(len(buffer))
                return
            # Message boundaries are ASCII, so decoding all complete messages
            # in one go cannot split a character.
            text = buffer[:end].decode("utf-8", "replace")
            del buffer[: end + 4]
            parts = text.split("\r\n\r\n")
        deliver = self._deliver
        for part in parts:  # the loop of _part, inlined: events are the bulk of the stream
            if part.startswith("Event: "):
                newline = part.find("\n")
                name = part[7:] if newline < 0 else part[7:newline].removesuffix("\r")
                deliver(Event(name, text=part), part)
            elif part:
                deliver(parse_message(part), part)

    def _part(self, text: str) -> None:
        """Deliver one message's text (its closing blank line left out)."""
        if text.startswith("Event: "):
            # Events are the bulk of the stream: the name now, the headers on demand.
            # The name is the first header's value exactly as parse_headers reads it.
            newline = text.find("\n")
            name = text[7:] if newline < 0 else text[7:newline].removesuffix("\r")
            self._deliver(Event(name, text=text), text)
        elif text:
            self._deliver(parse_message(text), text)

    def _frame_one(self) -> bool:
        """Frame a single message (slow path, used around ``Response: Follows``)."""
        buffer = self._buffer
        while buffer.startswith(b"\n") or buffer.startswith(b"\r\n"):
            del buffer[: 1 if buffer[0] == 0x0A else 2]
        if buffer.startswith(_FOLLOWS):
            marker = buffer.find(_END_COMMAND)
            if marker < 0:
                self._check_size(len(buffer))
                return False
            end = buffer.find(b"\n", marker)
            if end < 0:
                return False
            raw = bytes(buffer[:end])
            # The old format closes with "--END COMMAND--", its line end, then a blank line.
            after = end + 1
            after += 2 if buffer.startswith(b"\r\n", after) else 1 if buffer.startswith(b"\n", after) else 0
            del buffer[:after]
            self._deliver(Response("Follows", follows_headers(raw.decode("utf-8", "replace"))), "")
            return True
        match = _TERMINATOR.search(buffer)
        if match is None:
            return False
        text = buffer[: match.start()].decode("utf-8", "replace")
        del buffer[: match.end()]
        self._part(text)
        return True

    def _check_size(self, size: int) -> None:
        if size > self._max:
            raise RemoteProtocolError(f"AMI message exceeds {self._max} bytes")

    def _deliver(self, message: Event | Response, text: str) -> None:
        lists = self._lists
        if isinstance(message, Response):
            action_id = message.action_id
            if action_id is not None:
                if (message.get("EventList") or "").lower() == "start":
                    overflow = lists.start(action_id, message)
                    if overflow is not None:
                        self._ready.append(overflow)
                    return
                lists.answered(action_id)
            self._ready.append(message)
            return
        if lists.collecting:
            action_id = message.get("ActionID")
            if action_id is not None and lists.owns(action_id):
                outcome = lists.item(action_id, message, text)
                if outcome is not None:
                    self._ready.append(outcome)
                return
        self._ready.append(message)
