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
  Lists are capped and forgettable (:class:`~salara.ami.messages.ListCollector`);
  a list over its cap comes out as an :class:`~salara.errors.AMIListOverflow`.
- A message over ``max_message_bytes`` (its closing empty line counted), or a
  buffer growing past it, is :class:`RemoteProtocolError`, whole or cut.
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
from typing import Final

from salara.ami.headers import MAX_HEADERS as MAX_HEADERS  # re-exported: Asterisk's limits, for callers
from salara.ami.headers import MAX_LINE_BYTES as MAX_LINE_BYTES
from salara.ami.headers import encode_headers, follows_headers, parse_headers
from salara.ami.messages import (
    DEFAULT_MAX_LIST_BYTES,
    DEFAULT_MAX_LIST_ITEMS,
    Action,
    Event,
    Greeting,
    ListCollector,
    Message,
    Response,
)
from salara.errors import LocalProtocolError, RemoteProtocolError
from salara.sansio import CLOSED as CLOSED
from salara.sansio import NEED_DATA as NEED_DATA
from salara.sansio import Sentinel as Sentinel

DEFAULT_MAX_MESSAGE_BYTES: Final = 1 << 20
"""Largest incoming message accepted before the peer is deemed broken."""

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


def _skip_line_ends(buffer: bytearray) -> int:
    """Where the first line that is not empty starts in ``buffer`` (LF or CR LF line ends)."""
    index = 0
    while True:
        if buffer.startswith(b"\n", index):
            index += 1
        elif buffer.startswith(b"\r\n", index):
            index += 2
        else:
            return index


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
        self._broken = ""  # why framing stopped for good (a RemoteProtocolError was raised)
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
        if self._broken:
            raise RemoteProtocolError(self._broken)
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
    def buffered_bytes(self) -> int:
        """Bytes received but not yet framed (part of one message); never over ``max_message_bytes``.

        The limit counts a message's bytes with its closing empty line; a
        message over it, or a buffer growing past it, raises
        :class:`RemoteProtocolError` and the buffer is dropped.
        """
        return len(self._buffer)

    @property
    def awaiting_body(self) -> bool:
        """True while an old ``Response: Follows`` body is held, its ``--END COMMAND--`` not yet read.

        Nothing behind it can come out before that marker. Asterisk writes the
        body at once after its head, so a caller with a clock bounds this wait
        (:data:`salara.ami.client.FOLLOWS_BODY_TIMEOUT_S`) and drops the link
        when it lasts; without a clock the bound is ``max_message_bytes``.
        """
        return self._buffer.startswith(_FOLLOWS, _skip_line_ends(self._buffer))

    def _frame(self) -> None:
        buffer = self._buffer
        if not self._greeted:
            newline = buffer.find(b"\n")
            if newline < 0:
                self._check_size(len(buffer))
                return
            self._check_size(newline + 1)
            self._greeted = True
            text = buffer[:newline].decode("utf-8", "replace").removesuffix("\r")
            del buffer[: newline + 1]
            self._ready.append(Greeting(text))
        while _FOLLOWS in buffer:
            if not self._frame_one():
                break
        else:
            self._frame_batch()
        self._check_size(len(buffer))  # what is left is part of one message

    def _frame_batch(self) -> None:
        """Frame every complete message at once (the fast path: no ``Response: Follows`` in the buffer)."""
        buffer = self._buffer
        if b"\n\n" in buffer:
            # Some message ends LF-only (an AMI proxy): split exactly, leftmost end first.
            last = max(_TERMINATOR.finditer(buffer), key=lambda match: match.end(), default=None)
            if last is None:
                return
            start, stop, crlf_only = last.start(), last.end(), False
        else:
            start = buffer.rfind(_END)
            if start < 0:
                return
            stop, crlf_only = start + 4, True
        if stop > self._max:  # some message there may be over the limit: one at a time, each checked
            while self._frame_one():
                pass
            return
        # Message boundaries are ASCII, so decoding all complete messages
        # in one go cannot split a character.
        text = buffer[:start].decode("utf-8", "replace")
        del buffer[:stop]
        parts = text.split("\r\n\r\n") if crlf_only else _TEXT_TERMINATOR.split(text)
        deliver, ready, lists = self._deliver, self._ready, self._lists
        collecting = lists.collecting
        for part in parts:  # the loop of _part, inlined: events are the bulk of the stream
            if part.startswith("Event: "):
                newline = part.find("\n")
                name = part[7:] if newline < 0 else part[7:newline].removesuffix("\r")
                if collecting:  # it may be a list's item
                    deliver(Event(name, text=part), part)
                    collecting = lists.collecting
                else:
                    ready.append(Event(name, text=part))
            elif part and (message := parse_message(part)).headers:
                deliver(message, part)
                collecting = lists.collecting

    def _part(self, text: str) -> None:
        """Deliver one message's text (its closing blank line left out); line ends alone are no message."""
        if text.startswith("Event: "):
            # Events are the bulk of the stream: the name now, the headers on demand.
            # The name is the first header's value exactly as parse_headers reads it.
            newline = text.find("\n")
            name = text[7:] if newline < 0 else text[7:newline].removesuffix("\r")
            self._deliver(Event(name, text=text), text)
        elif text and (message := parse_message(text)).headers:
            self._deliver(message, text)

    def _frame_one(self) -> bool:
        """Frame the first message, if it is complete (the slow path, around ``Response: Follows``).

        Sizes and boundaries are exactly the fast path's, so where the stream
        is cut (and so which path runs) never changes what comes out.
        """
        buffer = self._buffer
        start = _skip_line_ends(buffer)
        match = _TERMINATOR.search(buffer)
        if match is not None and match.start() <= start:  # only line ends before an end: no message
            del buffer[: match.end()]
            return True
        if buffer.startswith(_FOLLOWS, start):
            marker = buffer.find(_END_COMMAND, start)
            end = buffer.find(b"\n", marker) if marker >= 0 else -1
            if end < 0:
                return False
            # The old format closes with "--END COMMAND--" and its line end (then a blank line, no message).
            self._check_size(end + 1)
            raw = bytes(buffer[start:end])
            del buffer[: end + 1]
            self._deliver(Response("Follows", follows_headers(raw.decode("utf-8", "replace"))), "")
            return True
        if match is None:
            return False
        self._check_size(match.end())
        text = buffer[: match.start()].decode("utf-8", "replace")
        del buffer[: match.end()]
        self._part(text)
        return True

    def _check_size(self, size: int) -> None:
        if size > self._max:
            self._broken = f"AMI message exceeds {self._max} bytes"
            self._buffer.clear()  # nothing more is framed: the caller drops the connection
            self._lists.clear()
            raise RemoteProtocolError(self._broken)

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
