"""AMI list answers folded into one :class:`~salara.ami.messages.Response`, within caps.

A list action (``CoreShowChannels``, ``PJSIPShowEndpoints``, ``Status``...;
"AMI v2 Specification", docs.asterisk.org) answers ``Response: Success``
with ``EventList: start``, then one event per item carrying its ActionID,
then an event with ``EventList: Complete``. :class:`ListCollector` keeps the
items of each list until that end, so the caller gets the whole list at once.

Nothing here waits for ever or grows without bound:

- a list over :data:`DEFAULT_MAX_LIST_ITEMS` items or
  :data:`DEFAULT_MAX_LIST_BYTES` bytes (or one past :data:`MAX_OPEN_LISTS`
  lists at once) is dropped and reported as an
  :class:`~salara.errors.AMIListOverflow` for its ActionID;
- a list the caller gave up on (:meth:`ListCollector.forget`: the action timed
  out or was cancelled) is dropped at once;
- the rest of a dropped list is discarded as it arrives, up to its Complete
  event; so is a list whose start comes after its action was given up. At
  most :data:`MAX_DISCARDED_LISTS` such ActionIDs are remembered (the oldest
  goes first; its late items would then be delivered as plain events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from salara.ami.messages import Event, Response
from salara.errors import AMIListOverflow

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


def _size_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


class ListCollector:
    """The list answers being collected on one AMI connection, without I/O."""

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
        if self._forgotten.pop(action_id, None) is not None:
            self._discard(action_id)
            return None
        if action_id in self._discarding:
            return None
        if len(self._open) >= MAX_OPEN_LISTS and action_id not in self._open:
            self._discard(action_id)
            return AMIListOverflow(action_id, f"more than {MAX_OPEN_LISTS} lists open at once")
        self._open[action_id] = _OpenList(response)  # a repeated start begins the list anew
        return None

    def item(self, action_id: str, event: Event, text: str) -> Response | AMIListOverflow | None:
        """Take one item of the list ``action_id`` (:meth:`owns` is true); ``text`` is its wire text.

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
        size = _size_bytes(text)
        if complete:
            del self._open[action_id]
            pending.items.append(event)
            return pending.response.with_events(pending.items)
        if len(pending.items) >= self._max_items or pending.size_bytes + size > self._max_bytes:
            del self._open[action_id]
            self._discard(action_id)
            return AMIListOverflow(
                action_id, f"more than {self._max_items} items or {self._max_bytes} bytes (salara's cap)"
            )
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
