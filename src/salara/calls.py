"""Call tracking and the CRM events it produces (SPEC §2), without I/O.

A *tracked call* is one salara placed (make call, with ``watch_makecall``) or
routed (FastAGI). It is keyed by its Linkedid, which every channel of the call
shares; salara knows the Linkedid of a call it originates because it chooses
the first channel's Uniqueid itself (``Originate`` ``ChannelId``). The tracker
keeps the live channels of every call (from Newchannel and Hangup), with each
channel's name and last known state (Newchannel, Newstate), so a call tracked
while it already has channels (a routed call) still ends exactly when its last
channel hangs up.

Missed Hangups: while salara is not connected to Asterisk (AMI link down, or
salara not running) Hangups go unseen. :meth:`CallTracker.sweep` compares the
live channels with those Asterisk still has (AMI ``CoreShowChannels``, after
every login and periodically) and, for every channel gone meanwhile, emits a
*synthesized* Hangup (:attr:`CrmEvent.synthesized`) as the real one would have
been emitted (``[event] hangup`` mode 1: channels of tracked calls, 2: every
channel), then ends tracking of calls left without channels. Changes seen while
the channel list is on its way win over it (:meth:`CallTracker.begin_resync`).

Durability: what a restart must not forget (tracked calls, and the live
channels a synthesized Hangup would need: those of tracked calls, or every
channel with ``hangup = 2``) is handed out as :class:`TrackingChanges` by
:meth:`CallTracker.take_changes`, for the caller to store in the same
transaction as the events of the same AMI read, and loaded back with
:meth:`CallTracker.restore`.

Which AMI events become CRM events follows the ``[event]`` modes:

- ``newchannel``, ``hangup``: 0 off, 1 tracked calls, 2 all calls;
- ``newexten``, ``agentcon``: 0 off, 1 tracked calls in state UP,
  2 tracked calls in any state, 3 all calls in any state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from salara.ami.messages import Event
from salara.config import Event as EventModes
from salara.states import channel_state_event_name

UP: Final = 6
"""Channel state code of an answered channel (``AST_STATE_UP``)."""
UNKNOWN_STATE: Final = 10
"""Channel state code ``Unknown``: what is reported when no state was ever seen."""

MAX_TRACKED: Final = 10_000
"""Most calls tracked at once; beyond it the oldest is forgotten (and logged by the caller)."""


@dataclass(slots=True)
class TrackedCall:
    """A call salara placed or routed: who it is between, and its live channels."""

    linkedid: str
    caller: str
    exten: str
    source: str
    """``makecall`` or ``route``."""
    started_at: float
    channels: set[str] = field(default_factory=set)
    """Uniqueids of the call's channels that have not hung up yet (shared with the tracker)."""
    seen_channel: bool = False


@dataclass(slots=True)
class LiveChannel:
    """A live channel as last reported: what a Hangup synthesized for it says."""

    linkedid: str
    name: str
    """``PJSIP/8001-00000004``; empty when only its Uniqueid is known."""
    state: int
    """Last known channel state code."""
    caller: str
    """Its CallerIDNum as last reported (the parties of an untracked call)."""
    exten: str
    """Its Exten as last reported."""
    stored: bool = False
    """A row of it was handed out by :meth:`CallTracker.take_changes` (and not removed since)."""


class ListedChannel(NamedTuple):
    """A channel Asterisk has now: one ``CoreShowChannel`` item."""

    uniqueid: str
    linkedid: str
    name: str = ""
    state: int = UNKNOWN_STATE
    caller: str = ""
    exten: str = ""


CallRow = tuple[str, str, str, str, float]
"""A tracked call to store: ``(linkedid, caller, exten, source, started_at)``."""
ChannelRow = tuple[str, str, str, int, str, str]
"""A live channel to store: ``(uniqueid, linkedid, name, state, caller, exten)``."""


@dataclass(frozen=True, slots=True)
class TrackingChanges:
    """Tracking to store (or, from :meth:`CallTracker.restore`'s point of view, stored).

    ``calls`` and ``channels`` are rows to write (insert or replace), ``ended``
    Linkedids of calls no longer tracked and ``removed`` Uniqueids of channels
    no longer kept, both to delete. ``started_at`` is in the clock the
    tracker's ``now`` arguments use.
    """

    calls: list[CallRow] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    channels: list[ChannelRow] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.calls or self.ended or self.channels or self.removed)


@dataclass(frozen=True, slots=True)
class CrmEvent:
    """One event for the CRM: the compat payload plus what correlates it."""

    name: str
    payload: dict[str, str]
    """The SPEC §2 object, e.g. ``{"event": "Hangup", "chan": ..., "caller": ..., ...}``."""
    uniqueid: str
    linkedid: str
    tracked: bool
    synthesized: bool = False
    """A Hangup salara did not see: the channel was gone when salara looked again."""


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one :meth:`CallTracker.sweep` found."""

    ended: list[str]
    """Linkedids of the tracked calls whose tracking ended."""
    hangups: list[CrmEvent]
    """Synthesized Hangups of the channels gone unseen, per the ``hangup`` mode."""
    missed: int
    """Channels that were gone unseen (a Hangup synthesized or not)."""


def agent_number(interface: str) -> str:
    """The agent's number from a queue member interface.

    ``Local/2222@ctx-00000001;1`` -> ``2222``; ``PJSIP/8001`` -> ``8001``;
    ``SIP/trunk/89161234567`` (a number dialled through a peer) -> ``89161234567``.
    """
    tech, _, resource = interface.partition("/")
    if not resource:
        resource = tech
    elif tech.lower() == "local":
        resource = resource.split("@", 1)[0]  # Local/exten@context/options
    else:
        resource = resource.rsplit("/", 1)[-1]
    for stop in ("@", ";"):
        resource = resource.split(stop, 1)[0]
    return resource


def _code(event: Event) -> int:
    raw = event.get("ChannelState") or ""
    return int(raw) if raw.isdigit() else UNKNOWN_STATE


def _state(event: Event) -> tuple[int, str]:
    code = _code(event)
    return code, channel_state_event_name(code)


class CallTracker:
    """Folds AMI events into tracked calls and decides which CRM events to emit."""

    def __init__(self, modes: EventModes, *, max_tracked: int = MAX_TRACKED) -> None:
        self.modes = modes
        self.max_tracked = max_tracked
        self.calls: dict[str, TrackedCall] = {}
        self.live: dict[str, set[str]] = {}
        """Uniqueids of the live channels of every call, by Linkedid."""
        self.channels: dict[str, LiveChannel] = {}
        """Every live channel known by name and state, by Uniqueid."""
        self.evicted = 0
        """Calls forgotten because :attr:`max_tracked` was reached."""
        self.synthesized = 0
        """Hangups synthesized for channels gone unseen."""
        self.on_change: Callable[[], None] | None = None
        """Called when tracking to store changes first after :meth:`take_changes` (to schedule a write)."""
        self._keep_all = modes.hangup == 2
        """Store every live channel, not only those of tracked calls: Hangups are wanted for all."""
        self._dirty = False
        self._dirty_calls: set[str] = set()
        self._dirty_channels: set[str] = set()
        self._removed: set[str] = set()
        self._resync: tuple[set[str], set[str]] | None = None

    # -- tracking ---------------------------------------------------------------

    def track(self, linkedid: str, caller: str, exten: str, source: str, now: float) -> TrackedCall:
        """Start tracking the call ``linkedid`` between ``caller`` and ``exten``.

        Tracking again updates the parties (a routed call re-routed keeps its channels).
        """
        call = self.calls.get(linkedid)
        if call is not None:
            call.caller, call.exten, call.source = caller, exten, source
            self._call_changed(linkedid)
            return call
        while len(self.calls) >= self.max_tracked:
            self._untrack(next(iter(self.calls)))
            self.evicted += 1
        channels = self.live.setdefault(linkedid, set())
        call = TrackedCall(linkedid, caller, exten, source, now, channels, bool(channels))
        self.calls[linkedid] = call
        self._call_changed(linkedid)
        self._dirty_channels.update(channels)  # now worth storing
        return call

    def forget(self, linkedid: str) -> bool:
        """Stop tracking a call; True if it was tracked."""
        if linkedid not in self.calls:
            return False
        self._untrack(linkedid)
        if not self.live.get(linkedid, True):
            del self.live[linkedid]
        return True

    def _untrack(self, linkedid: str) -> None:
        del self.calls[linkedid]
        self._call_changed(linkedid)
        if not self._keep_all:
            # Its stored channels are no longer worth keeping.
            self._dirty_channels.update(self.live.get(linkedid, ()))

    # -- resynchronisation ----------------------------------------------------------

    def begin_resync(self) -> None:
        """Call right before sending ``CoreShowChannels``: changes from now on win over its list."""
        self._resync = (set(), set())

    def abort_resync(self) -> None:
        """The list did not come: forget what :meth:`begin_resync` started."""
        self._resync = None

    def sweep(self, listed: Iterable[ListedChannel], now: float, grace_s: float) -> Sweep:
        """Resynchronise with the channels Asterisk has; end tracked calls that have none.

        ``listed`` are the channels of a ``CoreShowChannels`` answer. Channels
        created since :meth:`begin_resync` stay, channels hung up since stay
        gone; every other known channel missing from the list hung up unseen:
        a Hangup is synthesized for it if the ``hangup`` mode wants one and its
        name is known. A tracked call younger than ``grace_s`` seconds with no
        channel yet (an Originate still dialling) is kept.
        """
        born, dead = self._resync or (set(), set())
        self._resync = None
        keep_all = self._keep_all
        fresh: dict[str, set[str]] = {}
        alive: set[str] = set()
        for item in listed:
            uniqueid, linkedid = item.uniqueid, item.linkedid
            if not uniqueid or uniqueid in dead:
                continue
            alive.add(uniqueid)
            fresh.setdefault(linkedid, set()).add(uniqueid)
            channel = self.channels.get(uniqueid)
            if channel is None:
                self.channels[uniqueid] = LiveChannel(linkedid, item.name, item.state, item.caller, item.exten)
            else:
                changed = (channel.name, channel.state, channel.linkedid) != (item.name, item.state, linkedid)
                channel.name, channel.state, channel.linkedid = item.name, item.state, linkedid
                channel.caller, channel.exten = item.caller or channel.caller, item.exten or channel.exten
                if not changed:
                    continue
            if keep_all or linkedid in self.calls:
                self._channel_changed(uniqueid)
        for uniqueid in born:
            channel = self.channels.get(uniqueid)
            if channel is not None and uniqueid not in alive:
                alive.add(uniqueid)
                fresh.setdefault(channel.linkedid, set()).add(uniqueid)
        hangups = []
        missed = [uniqueid for uniqueid in self.channels if uniqueid not in alive]
        mode = self.modes.hangup
        for uniqueid in missed:
            channel = self.channels[uniqueid]
            call = self.calls.get(channel.linkedid)
            if channel.name and (mode == 2 or (mode == 1 and call is not None)):
                hangups.append(self._synthesized_hangup(uniqueid, channel, call))
            self._drop_channel(uniqueid)
        self.synthesized += len(hangups)
        ended = []
        for linkedid, call in list(self.calls.items()):
            # Update in place: the tracked call shares this set.
            call.channels.clear()
            call.channels.update(fresh.pop(linkedid, ()))
            fresh[linkedid] = call.channels
            if call.channels:
                call.seen_channel = True
            elif call.seen_channel or now - call.started_at > grace_s:
                del self.calls[linkedid]
                del fresh[linkedid]
                self._call_changed(linkedid)
                ended.append(linkedid)
        self.live = fresh
        return Sweep(ended, hangups, len(missed))

    def _synthesized_hangup(self, uniqueid: str, channel: LiveChannel, call: TrackedCall | None) -> CrmEvent:
        caller, exten = (call.caller, call.exten) if call is not None else (channel.caller, channel.exten)
        payload = {
            "event": "Hangup",
            "chan": channel.name,
            "caller": caller,
            "exten": exten,
            "state": channel_state_event_name(channel.state),
        }
        return CrmEvent("Hangup", payload, uniqueid, channel.linkedid, call is not None, synthesized=True)

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
        channels = self.channels
        dirty_channels = self._dirty_channels
        for linkedid in self._dirty_calls:
            call = self.calls.get(linkedid)
            if call is None:
                changes.ended.append(linkedid)
                continue
            changes.calls.append((linkedid, call.caller, call.exten, call.source, call.started_at))
            for uniqueid in call.channels:
                if uniqueid not in channels:  # known by its Uniqueid only (routing adds the caller's)
                    channels[uniqueid] = LiveChannel(linkedid, "", UNKNOWN_STATE, "", "")
                    dirty_channels.add(uniqueid)
        removed = self._removed
        for uniqueid in dirty_channels:
            channel = channels.get(uniqueid)
            if channel is None:
                continue
            if self._keep_all or channel.linkedid in self.calls:
                changes.channels.append(
                    (uniqueid, channel.linkedid, channel.name, channel.state, channel.caller, channel.exten)
                )
                channel.stored = True
            elif channel.stored:
                removed.add(uniqueid)
                channel.stored = False
        changes.removed.extend(removed)
        self._dirty_calls, self._dirty_channels, self._removed = set(), set(), set()
        return changes

    def keep_changes(self, changes: TrackingChanges) -> None:
        """The store refused ``changes``: hand them out again with the next ones.

        Does not call :attr:`on_change` (a store that keeps failing is not retried in a loop).
        """
        self._dirty_calls.update(row[0] for row in changes.calls)
        self._dirty_calls.update(changes.ended)
        self._dirty_channels.update(row[0] for row in changes.channels if row[0] in self.channels)
        self._removed.update(changes.removed)
        self._dirty = True

    def restore(self, stored: TrackingChanges) -> None:
        """Load tracking stored by an earlier run (its ``calls`` and ``channels``), before any event.

        The channels' Hangups missed while salara was away are found by the
        first :meth:`sweep`. Channels no longer worth keeping (the modes
        changed) are handed out as removed by the next :meth:`take_changes`.
        """
        for uniqueid, linkedid, name, state, caller, exten in stored.channels:
            self.channels[uniqueid] = LiveChannel(linkedid, name, state, caller, exten, stored=True)
            self.live.setdefault(linkedid, set()).add(uniqueid)
        for linkedid, caller, exten, source, started_at in sorted(stored.calls, key=lambda row: row[4]):
            if linkedid in self.calls:
                continue
            while len(self.calls) >= self.max_tracked:
                self._untrack(next(iter(self.calls)))
                self.evicted += 1
            channels = self.live.setdefault(linkedid, set())
            self.calls[linkedid] = TrackedCall(linkedid, caller, exten, source, started_at, channels, bool(channels))
        if not self._keep_all:
            stale = [uniqueid for uniqueid, channel in self.channels.items() if channel.linkedid not in self.calls]
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
        channel = self.channels.pop(uniqueid, None)
        if channel is not None:
            self._dirty_channels.discard(uniqueid)
            if channel.stored:
                self._removed.add(uniqueid)
                self._changed()

    # -- events -----------------------------------------------------------------

    def on_event(self, event: Event) -> CrmEvent | None:
        """Fold one AMI event; return the CRM event it produces, if any."""
        name = event.name
        if name == "Newexten":
            return self._newexten(event)
        if name == "Newchannel":
            return self._newchannel(event)
        if name == "Newstate":
            self._newstate(event)
            return None
        if name == "Hangup":
            return self._hangup(event)
        if name == "AgentConnect":
            return self._agent_connect(event)
        return None

    def _call_of(self, event: Event) -> TrackedCall | None:
        linkedid = event.get("Linkedid")
        return self.calls.get(linkedid) if linkedid is not None else None

    def _base(self, name: str, event: Event, call: TrackedCall | None) -> tuple[dict[str, str], int]:
        code, state = _state(event)
        if call is not None:
            caller, exten = call.caller, call.exten
        else:
            caller, exten = event.get("CallerIDNum") or "", event.get("Exten") or ""
        payload = {"event": name, "chan": event.get("Channel") or "", "caller": caller, "exten": exten}
        payload["state"] = state
        return payload, code

    def _emit(self, name: str, event: Event, payload: dict[str, str], call: TrackedCall | None) -> CrmEvent:
        return CrmEvent(
            name,
            payload,
            event.get("Uniqueid") or "",
            event.get("Linkedid") or "",
            call is not None,
        )

    def _newchannel(self, event: Event) -> CrmEvent | None:
        linkedid = event.get("Linkedid") or ""
        uniqueid = event.get("Uniqueid") or ""
        name = event.get("Channel") or ""
        code = _code(event)
        caller, exten = event.get("CallerIDNum") or "", event.get("Exten") or ""
        self.live.setdefault(linkedid, set()).add(uniqueid)
        self.channels[uniqueid] = LiveChannel(linkedid, name, code, caller, exten)
        if self._resync is not None:
            self._resync[0].add(uniqueid)
        call = self.calls.get(linkedid)
        if call is not None:
            call.seen_channel = True
            self._channel_changed(uniqueid)
        elif self._keep_all:
            self._channel_changed(uniqueid)
        mode = self.modes.newchannel
        if mode == 0 or (mode == 1 and call is None):
            return None
        if call is not None:
            caller, exten = call.caller, call.exten
        payload = {"event": "Newchannel", "chan": name, "caller": caller, "exten": exten}
        payload["state"] = channel_state_event_name(code)
        return CrmEvent("Newchannel", payload, uniqueid, linkedid, call is not None)

    def _newstate(self, event: Event) -> None:
        uniqueid = event.get("Uniqueid") or ""
        channel = self.channels.get(uniqueid)
        if channel is None:
            return
        code = _code(event)
        name = event.get("Channel") or channel.name
        channel.caller = event.get("CallerIDNum") or channel.caller
        channel.exten = event.get("Exten") or channel.exten
        if code != channel.state or name != channel.name:
            channel.state, channel.name = code, name
            if self._keep_all or channel.linkedid in self.calls:
                self._channel_changed(uniqueid)

    def _hangup(self, event: Event) -> CrmEvent | None:
        linkedid = event.get("Linkedid") or ""
        uniqueid = event.get("Uniqueid") or ""
        call = self.calls.get(linkedid)
        mode = self.modes.hangup
        result = None
        if not (mode == 0 or (mode == 1 and call is None)):
            payload, _ = self._base("Hangup", event, call)
            result = self._emit("Hangup", event, payload, call)
        if self._resync is not None:
            self._resync[1].add(uniqueid)
        self._drop_channel(uniqueid)
        channels = self.live.get(linkedid)
        if channels is not None:
            channels.discard(uniqueid)
            if not channels:
                # The call's last channel is gone: so is the call.
                del self.live[linkedid]
                if call is not None:
                    del self.calls[linkedid]
                    self._call_changed(linkedid)
        return result

    def _wanted(self, mode: int, call: TrackedCall | None, code: int) -> bool:
        if mode == 0:
            return False
        if mode == 3:
            return True
        return call is not None and (mode == 2 or code == UP)

    def _newexten(self, event: Event) -> CrmEvent | None:
        mode = self.modes.newexten
        if mode == 0 or (mode < 3 and not self.calls):
            return None
        call = self._call_of(event)
        payload, code = self._base("Newexten", event, call)
        if not self._wanted(mode, call, code):
            return None
        payload["app"] = event.get("Application") or ""
        return self._emit("Newexten", event, payload, call)

    def _agent_connect(self, event: Event) -> CrmEvent | None:
        mode = self.modes.agentcon
        if mode == 0 or (mode < 3 and not self.calls):
            return None
        call = self._call_of(event)
        code, state = _state(event)
        if not self._wanted(mode, call, code):
            return None
        payload = {
            "event": "AgentConnect",
            "chan": event.get("Channel") or "",
            "caller": call.caller if call is not None else event.get("CallerIDNum") or "",
            "queue": event.get("Queue") or "",
            "state": state,
            "agent": agent_number(event.get("Interface") or event.get("MemberName") or ""),
        }
        return self._emit("AgentConnect", event, payload, call)
