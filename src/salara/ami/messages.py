"""Immutable AMI messages: actions we send, responses and events we receive.

Also here, :class:`ListCollector` folds the answer to a list action (``EventList:
start``, items, ``EventList: Complete``) into one :class:`Response`, within caps.

Headers are kept as ordered ``(name, value)`` pairs so that repeated headers
(``ChanVariable``, ``Output``, ``Variable``) survive; lookup by name is
case-insensitive and returns the first occurrence. Names follow the Asterisk
Manager Interface documentation (docs.asterisk.org, "AMI Actions/Events").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from salara.ami.headers import UNSURE, Headers, find_header, parse_headers
from salara.errors import AMIListOverflow


class _HeaderLookup:
    """Case-insensitive, first-wins header lookup shared by every message kind."""

    __slots__ = ()
    headers: Headers

    def _index(self) -> dict[str, str]:
        index: dict[str, str] | None = getattr(self, "_cache", None)
        if index is None:
            index = {}
            for name, value in self.headers:
                index.setdefault(name.lower(), value)
            object.__setattr__(self, "_cache", index)
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (any case), or ``default``."""
        return self._index().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        try:
            return self._index()[name.lower()]
        except KeyError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index()

    def get_all(self, name: str) -> list[str]:
        """Every value of a repeated header, in order (e.g. ``Output``)."""
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def as_dict(self) -> dict[str, str]:
        """Headers as a plain dict (first value wins), original case kept."""
        result: dict[str, str] = {}
        for name, value in self.headers:
            result.setdefault(name, value)
        return result


@dataclass(frozen=True, slots=True)
class Action:
    """An AMI action to send: ``Action: <name>``, ``ActionID``, then ``headers``.

    ``headers`` may repeat a name (``Variable`` for Originate). The protocol
    layer validates names and values before a single byte is produced.
    """

    name: str
    action_id: str
    headers: Headers = ()

    @classmethod
    def build(
        cls,
        name: str,
        action_id: str,
        fields: Mapping[str, str | int] | Iterable[tuple[str, str | int]] = (),
    ) -> Action:
        """Build an action from a mapping or pairs; integers become strings."""
        pairs = fields.items() if isinstance(fields, Mapping) else fields
        return cls(name, action_id, tuple((key, str(value)) for key, value in pairs))


class Event(_HeaderLookup):
    """An AMI event (``Event: <name>`` first). ``name`` is the event's name.

    Built from wire text (which starts ``Event: <name>``), an event parses
    its headers only when they are all asked for: a busy PBX sends thousands
    of events a second, most are never read past their name and the rest
    for a few headers, which :meth:`get` finds in the text
    (:func:`~salara.ami.headers.find_header`). Immutable; equal when name and
    headers are equal.
    """

    __slots__ = ("_cache", "_headers", "_lookups", "_text", "name")
    name: str
    _headers: Headers | None
    _text: str | None
    _lookups: tuple[str, dict[str, str | None]] | None
    """The text lowered, and the values found in it so far; made at the first lookup."""
    _cache: dict[str, str] | None  # set by the first full parse's lookup (_HeaderLookup._index)

    def __init__(self, name: str, headers: Headers | None = None, *, text: str | None = None) -> None:
        if headers is None and text is None:
            headers = ()
        init = object.__setattr__  # immutable: its own __setattr__ refuses
        init(self, "name", name)
        init(self, "_headers", headers)
        init(self, "_text", text)
        init(self, "_lookups", None)  # most events are never looked into: the rest is made when one is

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (any case), or ``default``."""
        lookups = self._lookups
        if lookups is None:
            text = self._text
            if text is None:
                return self._index().get(name.lower(), default)
            lowered = text.lower()
            if len(lowered) != len(text):  # positions in one are not positions in the other
                return self._index().get(name.lower(), default)
            lookups = (lowered, {})
            object.__setattr__(self, "_lookups", lookups)
        lowered, found = lookups
        value = found.get(name, UNSURE)  # the call model asks for Uniqueid and Linkedid more than once
        if value is UNSURE:
            value = find_header(self._text or "", lowered, name)
            if value is UNSURE:
                return self._index().get(name.lower(), default)  # parses: lookups in the text end
            found[name] = value
        return default if value is None else value

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def may_hold(self, value: str) -> bool:
        """False when no header's value can be ``value`` (it is nowhere in the text): a quick no before a lookup.

        True when it may be, or when only the headers are kept (then look it up).
        """
        text = self._text
        return text is None or value in text

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Event is immutable")

    @property
    def headers(self) -> Headers:  # type: ignore[override]
        headers = self._headers
        if headers is None:
            headers = parse_headers(self._text or "")
            object.__setattr__(self, "_headers", headers)
            object.__setattr__(self, "_text", None)
            object.__setattr__(self, "_lookups", None)
        return headers

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.name == other.name and self.headers == other.headers

    def __hash__(self) -> int:
        return hash((self.name, self.headers))

    def __repr__(self) -> str:
        return f"Event(name={self.name!r}, headers={self.headers!r})"


@dataclass(frozen=True, slots=True)
class Response(_HeaderLookup):
    """The answer to one action (``Response: Success|Error|Goodbye|Follows``).

    For list actions (``EventList: start``) ``events`` holds every list item,
    the final ``...Complete`` event included; the list ends only on
    ``EventList: Complete``. For ``Command``, :attr:`output` gives the lines.
    """

    status: str
    headers: Headers
    events: tuple[Event, ...] = ()
    _cache: dict[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def ok(self) -> bool:
        """True for ``Success``, ``Goodbye`` and ``Follows``; False for ``Error``."""
        return self.status.lower() != "error"

    @property
    def message(self) -> str:
        return self.get("Message", "") or ""

    @property
    def output(self) -> list[str]:
        """Command output lines (``Output:`` headers, or an old ``Follows`` body)."""
        return self.get_all("Output")

    @property
    def items(self) -> tuple[Event, ...]:
        """List items without the closing ``...Complete`` event."""
        return tuple(e for e in self.events if (e.get("EventList") or "").lower() != "complete")

    def with_events(self, events: Iterable[Event]) -> Response:
        return Response(self.status, self.headers, tuple(events))


@dataclass(frozen=True, slots=True)
class Greeting:
    """The one-line banner AMI sends on connect, e.g. ``Asterisk Call Manager/11.0.0``."""

    text: str

    @property
    def version(self) -> str:
        return self.text.rpartition("/")[2]


# -- list answers ----------------------------------------------------------------

DEFAULT_MAX_LIST_ITEMS: Final = 50_000
"""Most items one list answer may hold (a big PBX's CoreShowChannels is a few thousand)."""
DEFAULT_MAX_LIST_BYTES: Final = 32 << 20
"""Most bytes of items (their wire text) one list answer may hold."""
MAX_OPEN_LISTS: Final = 256
"""Most lists collected at once; salara has a handful of list actions in flight."""
MAX_DISCARDED_LISTS: Final = 1024
"""Most given-up ActionIDs remembered so that their late items are discarded."""


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

    def clear(self) -> None:
        """Drop every list and every remembered ActionID (the connection is over)."""
        self._open.clear()
        self._discarding.clear()
        self._forgotten.clear()

    def sizes(self) -> dict[str, tuple[int, int]]:
        """ActionID -> ``(items, bytes)`` of every list being collected."""
        return {action_id: (len(lst.items), lst.size_bytes) for action_id, lst in self._open.items()}

    def _discard(self, action_id: str) -> None:
        self._discarding.pop(action_id, None)
        if len(self._discarding) >= MAX_DISCARDED_LISTS:
            del self._discarding[next(iter(self._discarding))]
        self._discarding[action_id] = None


Message = Event | Response | Greeting | AMIListOverflow
"""What the sans-I/O layer yields; an :class:`AMIListOverflow` is the failure of one list action, to raise there."""
