"""Call tracking and the CRM events it produces (SPEC §2), without I/O.

A *tracked call* is one salara placed (make call, with ``watch_makecall``) or
routed (FastAGI). It is keyed by its Linkedid, which every channel of the call
shares; salara knows the Linkedid of a call it originates because it chooses
the first channel's Uniqueid itself (``Originate`` ``ChannelId``). The tracker
keeps the live channels of every call (from Newchannel and Hangup), so a call
tracked while it already has channels (a routed call) still ends exactly when
its last channel hangs up. Channels whose Hangup was missed (AMI was down) are
dropped by :meth:`CallTracker.sweep` against the channels Asterisk still has.

Which AMI events become CRM events follows the ``[event]`` modes:

- ``newchannel``, ``hangup``: 0 off, 1 tracked calls, 2 all calls;
- ``newexten``, ``agentcon``: 0 off, 1 tracked calls in state UP,
  2 tracked calls in any state, 3 all calls in any state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from salara.ami.messages import Event
from salara.config import Event as EventModes
from salara.states import channel_state_event_name

UP: Final = 6
"""Channel state code of an answered channel (``AST_STATE_UP``)."""

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


@dataclass(frozen=True, slots=True)
class CrmEvent:
    """One event for the CRM: the compat payload plus what correlates it."""

    name: str
    payload: dict[str, str]
    """The SPEC §2 object, e.g. ``{"event": "Hangup", "chan": ..., "caller": ..., ...}``."""
    uniqueid: str
    linkedid: str
    tracked: bool


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


def _state(event: Event) -> tuple[int, str]:
    raw = event.get("ChannelState") or ""
    code = int(raw) if raw.isdigit() else 10
    return code, channel_state_event_name(code)


class CallTracker:
    """Folds AMI events into tracked calls and decides which CRM events to emit."""

    def __init__(self, modes: EventModes, *, max_tracked: int = MAX_TRACKED) -> None:
        self.modes = modes
        self.max_tracked = max_tracked
        self.calls: dict[str, TrackedCall] = {}
        self.live: dict[str, set[str]] = {}
        """Uniqueids of the live channels of every call, by Linkedid."""
        self.evicted = 0
        """Calls forgotten because :attr:`max_tracked` was reached."""

    # -- tracking ---------------------------------------------------------------

    def track(self, linkedid: str, caller: str, exten: str, source: str, now: float) -> TrackedCall:
        """Start tracking the call ``linkedid`` between ``caller`` and ``exten``.

        Tracking again updates the parties (a routed call re-routed keeps its channels).
        """
        call = self.calls.get(linkedid)
        if call is not None:
            call.caller, call.exten, call.source = caller, exten, source
            return call
        while len(self.calls) >= self.max_tracked:
            del self.calls[next(iter(self.calls))]
            self.evicted += 1
        channels = self.live.setdefault(linkedid, set())
        call = TrackedCall(linkedid, caller, exten, source, now, channels, bool(channels))
        self.calls[linkedid] = call
        return call

    def forget(self, linkedid: str) -> bool:
        """Stop tracking a call; True if it was tracked."""
        if self.calls.pop(linkedid, None) is None:
            return False
        if not self.live.get(linkedid, True):
            del self.live[linkedid]
        return True

    def sweep(self, live_channels: Iterable[tuple[str, str]], now: float, grace_s: float) -> list[str]:
        """Resynchronise with the channels Asterisk has; drop tracked calls that have none.

        ``live_channels`` are ``(Uniqueid, Linkedid)`` pairs of every channel
        Asterisk has now (AMI ``CoreShowChannels``). A tracked call younger
        than ``grace_s`` seconds with no channel yet (an Originate still
        dialling) is kept. Returns the Linkedids whose tracking ended.
        """
        fresh: dict[str, set[str]] = {}
        for uniqueid, linkedid in live_channels:
            fresh.setdefault(linkedid, set()).add(uniqueid)
        dropped = []
        for linkedid, call in list(self.calls.items()):
            # Update in place: the tracked call shares this set.
            call.channels.clear()
            call.channels.update(fresh.pop(linkedid, ()))
            fresh[linkedid] = call.channels
            if not call.channels and (call.seen_channel or now - call.started_at > grace_s):
                del self.calls[linkedid]
                del fresh[linkedid]
                dropped.append(linkedid)
        self.live = fresh
        return dropped

    # -- events -----------------------------------------------------------------

    def on_event(self, event: Event) -> CrmEvent | None:
        """Fold one AMI event; return the CRM event it produces, if any."""
        name = event.name
        if name == "Newexten":
            return self._newexten(event)
        if name == "Newchannel":
            return self._newchannel(event)
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
        self.live.setdefault(linkedid, set()).add(event.get("Uniqueid") or "")
        call = self.calls.get(linkedid)
        if call is not None:
            call.seen_channel = True
        mode = self.modes.newchannel
        if mode == 0 or (mode == 1 and call is None):
            return None
        payload, _ = self._base("Newchannel", event, call)
        return self._emit("Newchannel", event, payload, call)

    def _hangup(self, event: Event) -> CrmEvent | None:
        linkedid = event.get("Linkedid") or ""
        call = self.calls.get(linkedid)
        mode = self.modes.hangup
        result = None
        if not (mode == 0 or (mode == 1 and call is None)):
            payload, _ = self._base("Hangup", event, call)
            result = self._emit("Hangup", event, payload, call)
        channels = self.live.get(linkedid)
        if channels is not None:
            channels.discard(event.get("Uniqueid") or "")
            if not channels:
                # The call's last channel is gone: so is the call.
                del self.live[linkedid]
                if call is not None:
                    del self.calls[linkedid]
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
