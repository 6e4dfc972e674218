"""Tracked calls and the CRM events they produce (SPEC §2), on the one call registry; no I/O.

A *tracked call* is one salara placed (make call, with ``watch_makecall``) or
routed (FastAGI). It is keyed by its Linkedid, which every channel of the call
shares; salara knows the Linkedid of a call it originates because it chooses
the first channel's Uniqueid itself (``Originate`` ``ChannelId``). Its live
channels are the registry's (:class:`~salara.calls.registry.CallRegistry`),
so a call tracked while it already has channels (a routed call) still ends
exactly when its last channel hangs up.

:meth:`CallTracker.on_event` is the model's one entry for AMI events: it folds
the event into the registry, then decides which CRM event it makes
(:mod:`salara.calls.events`).

Missed Hangups: while salara is not connected to Asterisk (AMI link down, or
salara not running) Hangups go unseen. :meth:`CallTracker.sweep` resynchronises
the registry with the channels Asterisk still has (AMI ``CoreShowChannels``,
after every login and periodically) and, for every channel gone meanwhile,
emits a *synthesized* Hangup (:attr:`CrmEvent.synthesized`) as the real one
would have been emitted (``[event] hangup`` mode 1: channels of tracked calls,
2: every channel), then ends tracking of calls left without channels.

Durability: what a restart must not forget (tracked calls, and the live
channels a synthesized Hangup or a reconciled ``call.ended`` would need:
those of tracked calls, or every channel with ``hangup = 2`` or with
lifecycle events posted to the CRM) is handed out as :class:`TrackingChanges` by
:meth:`CallTracker.take_changes`, for the caller to store in the same
transaction as the events of the same AMI read, and loaded back with
:meth:`CallTracker.restore`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from salara.ami.messages import Event
from salara.calls.call import Channel, ListedChannel
from salara.calls.events import (
    CrmEvent,
    agent_connect_event,
    channel_event,
    newexten_event,
    synthesized_hangup,
)
from salara.calls.listing import Owns, Resync
from salara.calls.registry import HANDLED_EVENTS, CallRegistry
from salara.calls.rows import CallRow, ChannelRow, Sweep, TrackedCall, TrackingChanges, call_row, told_by_store
from salara.config import Event as EventModes

FOLDED_EVENTS: Final = HANDLED_EVENTS | {"AgentConnect"}
"""Every AMI event :meth:`CallTracker.on_event` reads; the rest need not reach it (nor have a header parsed)."""


def folds(event: Event) -> bool:
    """Whether :meth:`CallTracker.on_event` would read ``event`` at all.

    Its name is in :data:`FOLDED_EVENTS`, and a ``VarSet`` sets ``DIALSTATUS``
    (the only variable the call model reads; a third of what a busy PBX
    sends is ``VarSet``, of other variables: their text tells at once).
    """
    if event.name != "VarSet":
        return event.name in FOLDED_EVENTS
    return event.may_hold("DIALSTATUS") and event.get("Variable") == "DIALSTATUS"


MAX_TRACKED: Final = 10_000
"""Most calls tracked at once; beyond it the oldest is forgotten (and logged by the caller)."""


class CallTracker:
    """Tracks calls on a :class:`CallRegistry` (its own unless given) and decides which CRM events to emit."""

    def __init__(
        self, modes: EventModes, registry: CallRegistry | None = None, *, max_tracked: int = MAX_TRACKED
    ) -> None:
        self.modes = modes
        self.registry = registry if registry is not None else CallRegistry()
        self.max_tracked = max_tracked
        self.calls: dict[str, TrackedCall] = {}
        self.evicted = 0
        """Calls forgotten because :attr:`max_tracked` was reached."""
        self.synthesized = 0
        """Hangups synthesized for channels gone unseen."""
        self.on_change: Callable[[], None] | None = None
        """Called when tracking to store changes first after :meth:`take_changes` (to schedule a write)."""
        self._keep_all = modes.hangup == 2 or (modes.lifecycle and modes.payload == "extended")
        """Store every live channel, not only those of tracked calls: Hangups (or ``call.ended``) are wanted for all."""
        self._dirty = False
        self._dirty_calls: set[str] = set()
        self._dirty_channels: set[str] = set()
        self._removed: set[str] = set()
        self._stored: set[str] = set()
        """Uniqueids whose rows were handed out by :meth:`take_changes` (and not removed since)."""

    @property
    def channels(self) -> dict[str, Channel]:
        """Every live channel by Uniqueid (the registry's)."""
        return self.registry.channels

    @property
    def live(self) -> dict[str, set[str]]:
        """Uniqueids of the live channels of every call that has some, by Linkedid (a view of the registry)."""
        return {call.id: set(call.channels) for call in self.registry.calls.values() if call.channels}

    # -- tracking ---------------------------------------------------------------

    def track(
        self,
        linkedid: str,
        caller: str,
        exten: str,
        source: str,
        wall: float,
        mono: float,
        *,
        client_state: str | None = None,
    ) -> TrackedCall:
        """Start tracking the call ``linkedid`` between ``caller`` and ``exten`` (at ``wall`` / ``mono``).

        Tracking again updates the parties (a routed call re-routed keeps its
        channels). A routed call (``source`` ``route``) is marked so in the
        registry, with its destination and ``client_state`` (when given).
        """
        self._mark(linkedid, source, exten, client_state)
        call = self.calls.get(linkedid)
        if call is not None:
            call.caller, call.exten, call.source = caller, exten, source
            self._call_changed(linkedid)
            return call
        while len(self.calls) >= self.max_tracked:
            self._untrack(next(iter(self.calls)))
            self.evicted += 1
        live = self.registry.live_channels(linkedid)
        call = TrackedCall(linkedid, caller, exten, source, wall, mono, self.registry, bool(live))
        self.calls[linkedid] = call
        self._call_changed(linkedid)
        self._dirty_channels.update(live)  # now worth storing
        return call

    def _mark(self, linkedid: str, source: str, exten: str, client_state: str | None) -> None:
        call = self.registry.calls.get(linkedid)
        if call is None or source != "route":
            return
        call.routed_to = exten
        if client_state is not None:
            call.client_state = client_state

    def forget(self, linkedid: str) -> bool:
        """Stop tracking a call; True if it was tracked."""
        if linkedid not in self.calls:
            return False
        self._untrack(linkedid)
        return True

    def _untrack(self, linkedid: str) -> None:
        del self.calls[linkedid]
        self._call_changed(linkedid)
        if not self._keep_all:
            # Its stored channels are no longer worth keeping.
            self._dirty_channels.update(self.registry.live_channels(linkedid))

    # -- events -----------------------------------------------------------------

    def on_event(self, event: Event, wall: float, mono: float) -> CrmEvent | None:
        """Fold one AMI event received at ``wall`` / ``mono``; return the CRM event it produces, if any."""
        name = event.name
        registry = self.registry
        if name == "Newchannel":
            registry.on_event(event, wall, mono)
            return self._newchannel(event)
        if name in ("Newstate", "Rename"):
            self._newstate(event, wall, mono)
            return None
        if name == "Hangup":
            return self._hangup(event, wall, mono)
        registry.on_event(event, wall, mono)
        if name in ("DialEnd", "VarSet", "Newexten"):  # the called side answered, maybe
            self._answer_seen(event.get("Linkedid") or "")
        if name == "Newexten":
            if self.modes.newexten == 0 or (self.modes.newexten < 3 and not self.calls):
                return None
            return newexten_event(self.modes, event, self._call_of(event))
        if name == "AgentConnect":
            if self.modes.agentcon == 0 or (self.modes.agentcon < 3 and not self.calls):
                return None
            return agent_connect_event(self.modes, event, self._call_of(event))
        return None

    def _call_of(self, event: Event) -> TrackedCall | None:
        linkedid = event.get("Linkedid")
        return self.calls.get(linkedid) if linkedid is not None else None

    def _newchannel(self, event: Event) -> CrmEvent | None:
        uniqueid = event.get("Uniqueid") or ""
        call = self._call_of(event)
        if call is not None:
            call.seen_channel = True
            self._channel_changed(uniqueid)
        elif self._keep_all:
            self._channel_changed(uniqueid)
        return channel_event(self.modes, event, call)

    def _newstate(self, event: Event, wall: float, mono: float) -> None:
        """A ``Newstate`` or ``Rename``: a stored channel row changes with the channel's name or state."""
        channel = self.registry.channels.get(event.get("Uniqueid") or "")
        before = (channel.name, channel.state) if channel is not None else None
        self.registry.on_event(event, wall, mono)
        changed = channel is not None and before != (channel.name, channel.state)
        if changed and channel is not None and (self._keep_all or channel.linkedid in self.calls):
            self._channel_changed(channel.uniqueid)
        if channel is not None:
            self._answer_seen(channel.linkedid)

    def _answer_seen(self, linkedid: str) -> None:
        """A tracked call's stored row changes when the call is answered (the time survives a restart)."""
        tracked = self.calls.get(linkedid)
        if tracked is None:
            return
        call = self.registry.calls.get(linkedid)
        if call is not None and call.answered_at != tracked.answered_at:
            self._call_changed(linkedid)

    def _hangup(self, event: Event, wall: float, mono: float) -> CrmEvent | None:
        linkedid = event.get("Linkedid") or ""
        uniqueid = event.get("Uniqueid") or ""
        call = self.calls.get(linkedid)
        result = channel_event(self.modes, event, call)
        known = uniqueid in self.registry.channels
        self.registry.on_event(event, wall, mono)
        self._drop_channel(uniqueid)
        if known and call is not None and not self.registry.live_channels(linkedid):
            # The call's last channel is gone: so is the call.
            del self.calls[linkedid]
            self._call_changed(linkedid)
        return result

    # -- resynchronisation ----------------------------------------------------------

    def begin_resync(self) -> None:
        """Call right before sending ``CoreShowChannels``: changes from now on win over its list."""
        self.registry.begin_resync()

    def abort_resync(self) -> None:
        """The list did not come: forget what :meth:`begin_resync` started."""
        self.registry.abort_resync()

    def sweep(
        self, listed: Iterable[ListedChannel], wall: float, mono: float, grace_s: float, owns: Owns = None
    ) -> Sweep:
        """Resynchronise with the channels Asterisk has; end tracked calls that have none.

        ``listed`` are the channels of a ``CoreShowChannels`` answer
        (:meth:`CallRegistry.resync`). For every channel that hung up unseen
        a Hangup is synthesized if the ``hangup`` mode wants one and its name
        is known. A tracked call younger than ``grace_s`` seconds with no
        channel yet (an Originate still dialling) is kept. With ``owns`` (one
        PBX's ids, :mod:`salara.calls.ids`) only its channels and calls are swept.
        """
        resync: Resync = self.registry.resync(listed, wall, mono, owns)
        for uniqueid in resync.changed:
            channel = self.registry.channels.get(uniqueid)
            if channel is not None and (self._keep_all or channel.linkedid in self.calls):
                self._channel_changed(uniqueid)
        hangups = []
        mode = self.modes.hangup
        for channel in resync.missed:
            call = self.calls.get(channel.linkedid)
            if channel.name and (mode == 2 or (mode == 1 and call is not None)):
                hangups.append(synthesized_hangup(channel, call))
            self._drop_channel(channel.uniqueid)
        for uniqueid in self._stored - self.registry.channels.keys():
            self._drop_channel(uniqueid)  # the registry let it go (its bound): so does the store
        self.synthesized += len(hangups)
        ended = []
        for linkedid, call in list(self.calls.items()):
            if owns is not None and not owns(linkedid):
                continue
            if self.registry.live_channels(linkedid):
                call.seen_channel = True
            elif call.seen_channel or mono - call.started_mono > grace_s:
                del self.calls[linkedid]
                self._call_changed(linkedid)
                ended.append(linkedid)
        return Sweep(ended, hangups, len(resync.missed))

    # -- durability -------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Whether :meth:`take_changes` has something to hand out."""
        return self._dirty

    def take_changes(self) -> TrackingChanges | None:
        """What changed since the last call, to store; None when nothing did.

        Rows are those of the tracked calls, and of the live channels worth
        keeping over a restart: those of tracked calls, or all with ``hangup = 2``.
        """
        if not self._dirty:
            return None
        self._dirty = False
        changes = TrackingChanges()
        for linkedid in self._dirty_calls:
            call = self.calls.get(linkedid)
            if call is None:
                changes.ended.append(linkedid)
            else:
                changes.calls.append(call_row(call, self.registry.calls.get(linkedid)))
        removed = self._removed
        channels = self.registry.channels
        for uniqueid in self._dirty_channels:
            channel = channels.get(uniqueid)
            if channel is None:
                continue
            if self._keep_all or channel.linkedid in self.calls:
                changes.channels.append(
                    (
                        uniqueid,
                        channel.linkedid,
                        channel.name,
                        channel.state,
                        channel.caller_id_num,
                        channel.dialplan_exten,
                    )
                )
                self._stored.add(uniqueid)
            elif uniqueid in self._stored:
                removed.add(uniqueid)
                self._stored.discard(uniqueid)
        changes.removed.extend(removed)
        self._dirty_calls, self._dirty_channels, self._removed = set(), set(), set()
        return changes

    def keep_changes(self, changes: TrackingChanges) -> None:
        """The store refused ``changes``: hand them out again with the next ones.

        Does not call :attr:`on_change` (a store that keeps failing is not retried in a loop).
        """
        self._dirty_calls.update(row[0] for row in changes.calls)
        self._dirty_calls.update(changes.ended)
        self._dirty_channels.update(row[0] for row in changes.channels if row[0] in self.registry.channels)
        self._removed.update(changes.removed)
        self._dirty = True

    def restore(self, stored: TrackingChanges, wall: float, mono: float) -> None:
        """Load tracking stored by an earlier run (its ``calls`` and ``channels``), before any event.

        The channels' Hangups missed while salara was away are found by the
        first :meth:`sweep`. Channels no longer worth keeping (the modes
        changed) are handed out as removed by the next :meth:`take_changes`.
        """
        self.registry.restore((ListedChannel(*row) for row in stored.channels), wall, mono)
        self._stored.update(row[0] for row in stored.channels)
        for linkedid, caller, exten, source, started_at, client_state, answered_at in sorted(
            stored.calls, key=lambda row: row[4]
        ):
            if linkedid in self.calls:
                continue
            while len(self.calls) >= self.max_tracked:
                self._untrack(next(iter(self.calls)))
                self.evicted += 1
            started_mono = mono - max(0.0, wall - started_at)
            live = bool(self.registry.live_channels(linkedid))
            self.calls[linkedid] = TrackedCall(
                linkedid, caller, exten, source, started_at, started_mono, self.registry, live, answered_at
            )
            call = self.registry.calls.get(linkedid)
            if call is not None:
                told_by_store(call, (linkedid, caller, exten, source, started_at, client_state, answered_at))
        if not self._keep_all:
            channels = self.registry.channels
            stale = [uid for uid in self._stored if uid in channels and channels[uid].linkedid not in self.calls]
            if stale:
                self._dirty_channels.update(stale)
                self._changed()

    def _changed(self) -> None:
        if not self._dirty:
            self._dirty = True
            if self.on_change is not None:
                self.on_change()

    def _call_changed(self, linkedid: str) -> None:
        self._dirty_calls.add(linkedid)
        self._changed()

    def _channel_changed(self, uniqueid: str) -> None:
        self._dirty_channels.add(uniqueid)
        self._changed()

    def _drop_channel(self, uniqueid: str) -> None:
        self._dirty_channels.discard(uniqueid)
        if uniqueid in self._stored:
            self._stored.discard(uniqueid)
            self._removed.add(uniqueid)
            self._changed()


__all__ = ["CallRow", "CallTracker", "ChannelRow", "Sweep", "TrackedCall", "TrackingChanges"]
