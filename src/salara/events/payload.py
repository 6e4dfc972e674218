"""The one builder of call-event bodies: webhooks (compat or extended) and the live stream.

The *extended* body is the SPEC §2 object plus what correlates it::

    {"event": "Hangup", "chan": "PJSIP/8001-00000004", "caller": "8001",
     "exten": "9002", "state": "UP", "uniqueid": "...", "linkedid": "...",
     "pbx": "default", "tracked": true, "timestamp": "2026-11-29T14:25:01.134Z", "id": "5f0c...e1"}

(``"synthesized": true`` is added to a Hangup salara did not see; ``pbx``
names the PBX, :mod:`salara.calls.ids`, whose ids are ``NAME:...`` but
``default``'s.) The
*compat* body is its SPEC §2 subset, byte for byte what the old module sent.
The live stream's ``data`` is always the extended body of the same event,
whatever ``[event] payload`` says, so a stream and a webhook of one event
carry the same id, Asterisk's timestamp and ``synthesized``.

A lifecycle event (:mod:`salara.calls.lifecycle`) has one body only, flat,
``type`` and ``id`` first::

    {"type": "call.ringing", "id": "9b1e...04", "call_id": "salara-80e54b6ae6dc", "pbx": "default",
     "direction": "outbound", "from": "8001", "to": "9001", "operator": "8001",
     "leg": "operator", "channel": "PJSIP/8001-00000010", "endpoint": "PJSIP/8001",
     "timestamp": "2026-11-29T16:41:43.012Z", "client_state": "lead-4711"}

It never has a compat form: it goes to the live stream, and to the webhook
only with the extended payload.
"""

from __future__ import annotations

import math

from salara.ami.messages import Event
from salara.calls.events import CrmEvent
from salara.calls.ids import pbx_of
from salara.calls.lifecycle import LifecycleEvent
from salara.jsonbytes import dumps
from salara.utc import utc_timestamp


def event_time(event: Event, received_wall: float) -> float:
    """When an event happened (Unix s): Asterisk's ``Timestamp`` header if sent, else its receipt time.

    >>> event_time(Event("Hangup", (("Timestamp", "1795962301.134400"),)), 1795962302.0)
    1795962301.1344
    >>> event_time(Event("Hangup", ()), 1795962302.0)
    1795962302.0
    """
    raw = event.get("Timestamp")
    try:
        seconds = float(raw) if raw else received_wall
    except ValueError:
        return received_wall
    return seconds if math.isfinite(seconds) and seconds > 0 else received_wall  # nonsense: receipt time


def event_timestamp(event: Event, received_wall: float) -> str:
    """ISO 8601 UTC time of an event: Asterisk's ``Timestamp`` header if sent, else receipt time (Unix s)."""
    return utc_timestamp(event_time(event, received_wall))


def compat_body(crm_event: CrmEvent) -> bytes:
    """The compat JSON body: the SPEC §2 object alone."""
    return dumps(crm_event.payload)


def extended_body(crm_event: CrmEvent, event_id: str, timestamp: str) -> bytes:
    """The extended JSON body (see the module's docstring); ``timestamp`` from :func:`event_timestamp`."""
    data: dict[str, object] = {
        **crm_event.payload,
        "uniqueid": crm_event.uniqueid,
        "linkedid": crm_event.linkedid,
        "pbx": pbx_of(crm_event.linkedid or crm_event.uniqueid),
        "tracked": crm_event.tracked,
        "timestamp": timestamp,
        "id": event_id,
    }
    if crm_event.synthesized:
        data["synthesized"] = True
    return dumps(data)


def lifecycle_body(event: LifecycleEvent, event_id: str) -> bytes:
    """The JSON body of a lifecycle event: ``type``, ``id``, then its flat fields."""
    return dumps({"type": event.name, "id": event_id, **event.body})
