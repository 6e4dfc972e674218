"""Typed records of what Asterisk reports over AMI: extension states, PJSIP endpoints, channels.

Pure: each ``*_of`` function reads the events of one AMI answer
(``ExtensionState``, ``PJSIPShowEndpoint``, ``Status``) into a frozen record.
Times are UTC datetimes, round trips milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from salara.ami.messages import Event, Response
from salara.calls.call import UNKNOWN_STATE, known
from salara.states import channel_state_name, extension_state_name
from salara.utc import utc_datetime


@dataclass(frozen=True, slots=True)
class ExtensionInfo:
    """AMI ``ExtensionState`` of ``exten@context``: its hint, state code (-1: no such extension or no hint), text,
    and whether the state counts as available (``[url] good_status``)."""

    exten: str
    context: str
    hint: str | None
    state: int
    state_text: str
    available: bool


@dataclass(frozen=True, slots=True)
class Contact:
    uri: str
    user_agent: str | None
    status: str
    rtt_ms: float | None
    via: str | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    name: str
    registered: bool
    reachability: str
    """``reachable``, ``unreachable`` or ``unknown`` (no contact, or none qualified)."""
    rtt_ms: float | None
    device_state: str | None
    active_channels: int | None
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    name: str
    uniqueid: str | None
    linkedid: str | None
    state: str
    state_code: int
    caller_number: str | None
    caller_name: str | None
    connected_number: str | None
    connected_name: str | None
    context: str | None
    exten: str | None
    priority: int | None
    application: str | None
    application_data: str | None
    duration_s: int | None
    bridge_id: str | None


def _opt_int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def extension_state_of(exten: str, context: str, response: Response, good_status: tuple[int, ...]) -> ExtensionInfo:
    """An ``ExtensionState`` answer as an :class:`ExtensionInfo` (-1 ``Unknown`` when it has no ``Status``)."""
    code = _opt_int(response.get("Status"))
    code = -1 if code is None else code
    hint = known(response.get("Hint"))
    return ExtensionInfo(exten, context, hint, code, extension_state_name(code), code in good_status)


def reachability(statuses: list[str]) -> str:
    """``reachable`` if a contact answers qualify, ``unreachable`` if contacts exist and none does, else ``unknown``."""
    if "Reachable" in statuses:
        return "reachable"
    if "Unreachable" in statuses:
        return "unreachable"
    return "unknown"


def contact_of(event: Event) -> Contact:
    """A ``ContactStatusDetail`` event as a :class:`Contact` (round trip in ms, expiry as UTC)."""
    rtt_usec = _opt_int(event.get("RoundtripUsec"))
    expires = _opt_int(event.get("RegExpire"))
    return Contact(
        uri=event.get("URI") or "",
        user_agent=known(event.get("UserAgent")),
        status=event.get("Status") or "Unknown",
        rtt_ms=rtt_usec / 1000 if rtt_usec else None,
        via=known(event.get("ViaAddress")),
        expires_at=utc_datetime(expires) if expires else None,
    )


def endpoint_of(name: str, events: tuple[Event, ...]) -> EndpointInfo:
    """Normalise a ``PJSIPShowEndpoint`` list: contacts, reachability, device state."""
    contacts = tuple(contact_of(e) for e in events if e.name == "ContactStatusDetail")
    detail = next((e for e in events if e.name == "EndpointDetail"), None)
    reachable = [c.rtt_ms for c in contacts if c.status == "Reachable" and c.rtt_ms is not None]
    return EndpointInfo(
        name=name,
        registered=bool(contacts),
        reachability=reachability([c.status for c in contacts]),
        rtt_ms=min(reachable) if reachable else None,
        device_state=known(detail.get("DeviceState")) if detail is not None else None,
        active_channels=_opt_int(detail.get("ActiveChannels")) if detail is not None else None,
        contacts=contacts,
    )


def channel_of(item: Event) -> ChannelInfo:
    """A ``Status`` list item as a :class:`ChannelInfo`."""
    code = _opt_int(item.get("ChannelState"))
    code = UNKNOWN_STATE if code is None else code
    return ChannelInfo(
        name=item.get("Channel") or "",
        uniqueid=known(item.get("Uniqueid")),
        linkedid=known(item.get("Linkedid")),
        state=channel_state_name(code),
        state_code=code,
        caller_number=known(item.get("CallerIDNum")),
        caller_name=known(item.get("CallerIDName")),
        connected_number=known(item.get("ConnectedLineNum")),
        connected_name=known(item.get("ConnectedLineName")),
        context=known(item.get("Context")),
        exten=known(item.get("Exten")),
        priority=_opt_int(item.get("Priority")),
        application=known(item.get("Application")),
        application_data=known(item.get("Data")),
        duration_s=_opt_int(item.get("Seconds")),
        bridge_id=known(item.get("BridgeID")),
    )
