"""The registry made to match a channel list: a ``CoreShowChannels`` answer (:meth:`CallRegistry.resync`).

Pure; it works on the registry's own records (a part of it kept apart for
size): channels missing from the list hung up unseen, channels listed but
unknown are added (their calls' start unseen), and known ones take the
list's name, state and Linkedid, unless an event changed them since the
list was asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from salara.calls.call import Channel, ListedChannel, known

if TYPE_CHECKING:
    from salara.calls.registry import CallRegistry


@dataclass(frozen=True, slots=True)
class Resync:
    """What one :meth:`CallRegistry.resync` found."""

    missed: list[Channel] = field(default_factory=list)
    """Channels that were gone from Asterisk unseen (their Hangup was missed), as last known."""
    changed: list[str] = field(default_factory=list)
    """Uniqueids of channels the list added or whose name, state or Linkedid it changed."""
    ended: list[str] = field(default_factory=list)
    """Ids of the calls that ended because of it."""


Owns = Callable[[str], bool] | None
"""Which Uniqueids or call ids a channel list speaks for (one PBX's, :mod:`salara.calls.ids`); None: all."""


class SinceList:
    """The channels born and hung up since a channel list was asked for (:meth:`CallRegistry.begin_resync`).

    One list per PBX may be on its way at once: their Uniqueids never meet
    (:mod:`salara.calls.ids`), so they share the two sets, kept while any is open.
    """

    __slots__ = ("_born", "_dead", "_open")

    def __init__(self) -> None:
        self._open = 0
        self._born: set[str] = set()
        self._dead: set[str] = set()

    def begin(self) -> None:
        """A list was asked for."""
        self._open += 1

    def end(self) -> tuple[set[str], set[str]]:
        """A list came (or will not): ``(born, dead)`` since the first open one."""
        found = self._born, self._dead
        self._open = max(0, self._open - 1)
        if not self._open:
            self._born, self._dead = set(), set()
        return found

    def born(self, uniqueid: str) -> None:
        if self._open:
            self._born.add(uniqueid)

    def dead(self, uniqueid: str) -> None:
        if self._open:
            self._dead.add(uniqueid)


def fold_list(
    registry: CallRegistry,
    listed: Iterable[ListedChannel],
    born: set[str],
    dead: set[str],
    wall: float,
    mono: float,
    owns: Owns = None,
) -> Resync:
    """Fold a channel list into ``registry``; ``born``/``dead`` changed by events since it was asked for.

    ``owns``: which Uniqueids the list speaks for (one PBX's); None: all.
    """
    items = {item.uniqueid: item for item in listed if item.uniqueid}
    result = Resync()
    touched: set[str] = set()
    for uniqueid, channel in list(registry.channels.items()):
        if uniqueid in items or uniqueid in born or (owns is not None and not owns(uniqueid)):
            continue
        del registry.channels[uniqueid]
        result.missed.append(channel)
        call = registry.calls.get(channel.linkedid)
        if call is not None:
            call.channels.pop(uniqueid, None)
            touched.add(call.id)
    for uniqueid, item in items.items():
        if uniqueid in dead:
            continue
        current = registry.channels.get(uniqueid)
        if current is None:
            registry._add(Channel.of_listed(item, wall - item.duration_s), wall, mono, unseen=True)
            result.changed.append(uniqueid)
            continue
        channel = current
        changed = (channel.name, channel.state, channel.linkedid) != (item.name, item.state, item.linkedid)
        if channel.linkedid != item.linkedid:
            _move(registry, channel, item.linkedid, wall, mono)
        registry._set_state(channel, item.state, wall)
        channel.name = item.name or channel.name
        channel.caller_number = known(item.caller) or channel.caller_number
        channel.caller_id_num = item.caller or channel.caller_id_num
        channel.dialplan_exten = item.exten or channel.dialplan_exten
        channel.dialplan_context = item.context or channel.dialplan_context
        registry._in_context(channel.linkedid, channel.dialplan_context)
        if changed:
            result.changed.append(uniqueid)
            registry._touch(channel.linkedid)
    for call_id in touched:
        call = registry.calls.get(call_id)
        if call is not None and not call.channels and not call.originate_pending:
            call.end_unseen = True
            # A Cdr seen for it tells when it really ended; else it ended by now.
            ended = call.cdr_ended_at if call.cdr_ended_at is not None and call.cdr_ended_at <= wall else wall
            registry._end(call, ended, mono)
            result.ended.append(call_id)
    return result


def _move(registry: CallRegistry, channel: Channel, linkedid: str, wall: float, mono: float) -> None:
    old = registry.calls.get(channel.linkedid)
    if old is not None:
        old.channels.pop(channel.uniqueid, None)
    del registry.channels[channel.uniqueid]
    channel.linkedid = linkedid
    registry._add(channel, wall, mono)
