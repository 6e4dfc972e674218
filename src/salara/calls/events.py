"""Which AMI events become CRM events, and their compat payloads (SPEC §2), without I/O.

The ``[event]`` modes decide:

- ``newchannel``, ``hangup``: 0 off, 1 tracked calls, 2 all calls;
- ``newexten``, ``agentcon``: 0 off, 1 tracked calls in state UP,
  2 tracked calls in any state, 3 all calls in any state.

A tracked call's events carry the parties salara tracked it with (``caller``,
``exten``); any other call's, those of the AMI event itself.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from salara.ami.messages import Event
from salara.calls.call import UNKNOWN_STATE, UP, Channel
from salara.config import Event as EventModes
from salara.states import channel_state_event_name


class Parties(Protocol):
    """What a tracked call contributes to its events' payloads."""

    caller: str
    exten: str


class CrmEvent(NamedTuple):
    """One event for the CRM: the compat payload plus what correlates it.

    A named tuple (immutable, made at a tuple's cost: a busy PBX makes thousands a second).
    """

    name: str
    payload: dict[str, str]
    """The SPEC §2 object, e.g. ``{"event": "Hangup", "chan": ..., "caller": ..., ...}``."""
    uniqueid: str
    linkedid: str
    tracked: bool
    synthesized: bool = False
    """A Hangup salara did not see: the channel was gone when salara looked again."""


def agent_number(interface: str) -> str:
    """The agent's number from a queue member interface.

    >>> agent_number("Local/2222@ctx-00000001;1"), agent_number("PJSIP/8001")
    ('2222', '8001')
    >>> agent_number("SIP/trunk/89161234567")  # a number dialled through a peer
    '89161234567'
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


def state_code(event: Event) -> int:
    """The event's ``ChannelState`` code; 10 (Unknown) when absent or unreadable."""
    raw = event.get("ChannelState") or ""
    return int(raw) if raw.isdigit() else UNKNOWN_STATE


def _emit(name: str, event: Event, payload: dict[str, str], call: Parties | None) -> CrmEvent:
    return CrmEvent(name, payload, event.get("Uniqueid") or "", event.get("Linkedid") or "", call is not None)


def _channel_payload(name: str, event: Event, call: Parties | None) -> dict[str, str]:
    if call is not None:
        caller, exten = call.caller, call.exten
    else:
        caller, exten = event.get("CallerIDNum") or "", event.get("Exten") or ""
    return {
        "event": name,
        "chan": event.get("Channel") or "",
        "caller": caller,
        "exten": exten,
        "state": channel_state_event_name(state_code(event)),
    }


def wanted(mode: int, call: Parties | None, code: int) -> bool:
    """Whether a ``newexten``/``agentcon`` mode wants an event of a call in state ``code``."""
    if mode == 0:
        return False
    if mode == 3:
        return True
    return call is not None and (mode == 2 or code == UP)


def channel_event(modes: EventModes, event: Event, call: Parties | None) -> CrmEvent | None:
    """The CRM event of a ``Newchannel`` or ``Hangup`` of a call (tracked: ``call``), if its mode wants one."""
    mode = modes.newchannel if event.name == "Newchannel" else modes.hangup
    if mode == 0 or (mode == 1 and call is None):
        return None
    return _emit(event.name, event, _channel_payload(event.name, event, call), call)


def newexten_event(modes: EventModes, event: Event, call: Parties | None) -> CrmEvent | None:
    """The CRM event of a ``Newexten`` (``app`` is its ``Application``), if the ``newexten`` mode wants one."""
    if not wanted(modes.newexten, call, state_code(event)):
        return None
    payload = _channel_payload("Newexten", event, call)
    payload["app"] = event.get("Application") or ""
    return _emit("Newexten", event, payload, call)


def agent_connect_event(modes: EventModes, event: Event, call: Parties | None) -> CrmEvent | None:
    """The CRM event of an ``AgentConnect`` (a queue member answered), if the ``agentcon`` mode wants one."""
    code = state_code(event)
    if not wanted(modes.agentcon, call, code):
        return None
    payload = {
        "event": "AgentConnect",
        "chan": event.get("Channel") or "",
        "caller": call.caller if call is not None else event.get("CallerIDNum") or "",
        "queue": event.get("Queue") or "",
        "state": channel_state_event_name(code),
        "agent": agent_number(event.get("Interface") or event.get("MemberName") or ""),
    }
    return _emit("AgentConnect", event, payload, call)


def synthesized_hangup(channel: Channel, call: Parties | None) -> CrmEvent:
    """The Hangup of a channel that was gone unseen, as the real one would have said it."""
    caller, exten = (call.caller, call.exten) if call is not None else (channel.caller_id_num, channel.dialplan_exten)
    payload = {
        "event": "Hangup",
        "chan": channel.name,
        "caller": caller,
        "exten": exten,
        "state": channel_state_event_name(channel.state),
    }
    return CrmEvent("Hangup", payload, channel.uniqueid, channel.linkedid, call is not None, synthesized=True)
