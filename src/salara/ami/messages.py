"""Immutable AMI messages: actions we send, responses and events we receive.

Headers are kept as ordered ``(name, value)`` pairs so that repeated headers
(``ChanVariable``, ``Output``, ``Variable``) survive; lookup by name is
case-insensitive and returns the first occurrence. Names follow the Asterisk
Manager Interface documentation (docs.asterisk.org, "AMI Actions/Events").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from salara.ami.headers import Headers, parse_headers
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

    Built from wire text, an event parses its headers only when first asked:
    a busy PBX sends thousands of events a second and most are never read
    past their name. Immutable; equal when name and headers are equal.
    """

    __slots__ = ("_cache", "_headers", "_text", "name")
    name: str
    _headers: Headers | None
    _text: str | None
    _cache: dict[str, str] | None

    def __init__(self, name: str, headers: Headers | None = None, *, text: str | None = None) -> None:
        if headers is None and text is None:
            headers = ()
        for slot, value in (("name", name), ("_headers", headers), ("_text", text), ("_cache", None)):
            object.__setattr__(self, slot, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Event is immutable")

    @property
    def headers(self) -> Headers:  # type: ignore[override]
        headers = self._headers
        if headers is None:
            headers = parse_headers(self._text or "")
            object.__setattr__(self, "_headers", headers)
            object.__setattr__(self, "_text", None)
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


Message = Event | Response | Greeting | AMIListOverflow
"""What the sans-I/O layer yields; an :class:`AMIListOverflow` is the failure of one list action, to raise there."""
