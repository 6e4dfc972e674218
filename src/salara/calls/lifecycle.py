"""Call lifecycle events, decided from the one registry's fold: how each call goes, as a CRM records it.

- ``call.started``: the call's first channel (a call salara places: its
  operator's channel; one that never got a channel starts when it ends).
- ``call.ringing``: a device the call reaches rings (a channel in state
  Ringing; ``Local/`` channels are plumbing and not told), with ``leg``
  ``operator`` for the first leg of a call salara placed, else ``called``.
- ``call.answered``: the operator answered (``leg: operator``, a call salara
  placed), the called side answered (``leg: called``; ``answered_by`` says
  what showed it, as :mod:`salara.calls.outcome` takes it).
- ``call.transferred``: a blind or attended transfer, or salara's own
  ``Redirect`` (:mod:`salara.calls.details`).
- ``call.ended``: the summary, exactly once per call (the call model's
  :class:`~salara.calls.call.Told` keeps what was decided). Its ``result``
  is the call's :class:`~salara.calls.outcome.Outcome`, as ``/v1`` shows
  it. A call found ended by a resynchronisation (salara was away) is
  ``reconciled`` and its end time ``approximate`` (when salara found it
  gone: the end of the outage, at the latest), unless a ``Cdr`` event told
  when it ended (:mod:`salara.calls.cdr`). ``recording`` is the signed link
  to its recording, or null.

Every event names the call (``call_id``, its Linkedid), its ``direction``
(``outbound`` for a call salara placed; ``inbound`` for one it routed or one
in a context of ``[calls] inbound_contexts``; else ``internal``, as known at
the event), ``from``, ``to`` (for a routed call, the destination chosen),
``operator`` (a call salara placed), ``timestamp`` (ISO 8601 UTC, from the
fold's times: Asterisk's event ``Timestamp`` when it sends one) and
``client_state``. The body is flat; the payload builder
(:func:`salara.events.payload.lifecycle_body`) puts ``type`` and ``id``
first.

Pure: :class:`CallLifecycle` reads the calls the registry marks as touched
(:attr:`CallRegistry.touched <salara.calls.registry.CallRegistry.touched>`)
and decides what is new; it keeps nothing but what the call records carry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from string import hexdigits
from typing import Literal

from salara.calls.call import Call, Channel, Transfer
from salara.calls.ids import pbx_of
from salara.calls.registry import CallRegistry
from salara.eventtypes import LIFECYCLE_TYPES as LIFECYCLE_TYPES  # named here too: the call model's types
from salara.utc import utc_timestamp

Direction = Literal["outbound", "inbound", "internal"]


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """One lifecycle event of call ``linkedid``: its type and flat body (without ``type`` and ``id``)."""

    name: str
    linkedid: str
    body: dict[str, object]


def iso(seconds: float | None) -> str | None:
    """ISO 8601 UTC (milliseconds, ``Z``) of Unix seconds; None stays None."""
    return None if seconds is None else utc_timestamp(seconds)


def endpoint(name: str) -> str:
    """The device of a channel name: ``PJSIP/8001-0000000a`` is ``PJSIP/8001``.

    >>> endpoint("PJSIP/8001-0000000a"), endpoint("SIP/trunk-1f"), endpoint("Surrogate/x")
    ('PJSIP/8001', 'SIP/trunk', 'Surrogate/x')
    """
    base, sep, suffix = name.rpartition("-")
    return base if sep and base and suffix and all(c in hexdigits for c in suffix) else name


def transfer_fields(transfer: Transfer) -> dict[str, object]:
    """A transfer as ``call.transferred`` and the summary's chain show it (the channel's name now)."""
    return {
        "transfer": transfer.kind,
        "channel": transfer.channel_name,
        "target": transfer.target,
        "target_context": transfer.context or None,
        "transferer": transfer.transferer.name if transfer.transferer is not None else None,
        "at": iso(transfer.at),
    }


class CallLifecycle:
    """Decides the lifecycle events of the calls a :class:`CallRegistry` folds; observes it from now on."""

    def __init__(
        self,
        registry: CallRegistry,
        *,
        inbound_contexts: Iterable[str] = (),
        recording_url: Callable[[Call, float], str | None] | None = None,
    ) -> None:
        self.registry = registry
        self.inbound_contexts = frozenset(inbound_contexts)
        self.recording_url = recording_url
        """``(call, ended_at)`` -> the link to its recording ``call.ended`` carries (:mod:`salara.calls.recording`)."""
        if registry.touched is None:
            registry.touched = {}
        self.decided = 0
        """Lifecycle events decided so far."""

    def adopt(self) -> None:
        """The registry's calls now were told by an earlier run (restored from a store): tell only what comes next.

        Their ``call.ended`` is still to come (a resync finds it, reconciled,
        when the call ended while salara was away).
        """
        for call in self.registry.calls.values():
            told = call.told
            told.started = True
            told.ringing.update(call.channels)
            told.operator_answered = call.operator_answered_at is not None
            told.answered = call.answered_at is not None
            told.transfers = len(call.transfers)

    def direction(self, call: Call) -> Direction:
        """``outbound`` (salara placed it), ``inbound`` (salara routed it, or an inbound context), ``internal``."""
        if call.origin is not None:
            return "outbound"
        if call.routed_to is not None or not call.contexts.isdisjoint(self.inbound_contexts):
            return "inbound"
        return "internal"

    def take(self) -> list[LifecycleEvent]:
        """The lifecycle events of the calls changed since the last take, in order per call."""
        registry = self.registry
        touched = registry.touched
        if not touched:
            return []
        ids = list(touched)
        touched.clear()
        out: list[LifecycleEvent] = []
        for call_id in ids:
            call = registry.calls.get(call_id) or registry.ended.get(call_id)
            if call is not None and not call.told.ended:
                self._decide(call, out)
        self.decided += len(out)
        return out

    def _decide(self, call: Call, out: list[LifecycleEvent]) -> None:
        told = call.told
        if not told.started:
            if not call.channels and call.ended_at is None:
                return  # a call salara places, no channel yet: it may never leave (the Originate refused)
            told.started = True
            first = call.first
            started: dict[str, object] = {"channel": first.name if first is not None else None}
            if call.start_unseen:
                started.update(reconciled=True, approximate=True)
            out.append(self._event("call.started", call, call.created_at, started))
        for channel in list(call.channels.values()):
            if channel.ringing_at is not None and channel.uniqueid not in told.ringing:
                told.ringing.add(channel.uniqueid)
                self._ringing(call, channel, channel.ringing_at, out)
        if call.origin is not None and call.operator_answered_at is not None and not told.operator_answered:
            told.operator_answered = True
            operator = call.channels.get(call.id) or call.first
            answered = {"leg": "operator", "channel": operator.name if operator is not None else None}
            out.append(self._event("call.answered", call, call.operator_answered_at, answered))
        if call.answered_at is not None and not told.answered:
            told.answered = True
            by = call.answered_by
            answered = {"leg": "called", "channel": by if by is not None and "/" in by else None, "answered_by": by}
            out.append(self._event("call.answered", call, call.answered_at, answered))
        for transfer in call.transfers[told.transfers :]:
            out.append(self._event("call.transferred", call, transfer.at, transfer_fields(transfer)))
        told.transfers = len(call.transfers)
        if call.ended_at is not None:
            told.ended = True
            out.append(self._event("call.ended", call, call.ended_at, self.summary(call, call.ended_at)))

    def _ringing(self, call: Call, channel: Channel, at: float, out: list[LifecycleEvent]) -> None:
        operator = call.origin is not None and channel.uniqueid == call.id
        if channel.name.startswith("Local/") and not operator:
            return
        leg = "operator" if operator else "called"
        fields = {"leg": leg, "channel": channel.name, "endpoint": endpoint(channel.name)}
        out.append(self._event("call.ringing", call, at, fields))

    def summary(self, call: Call, ended_at: float) -> dict[str, object]:
        """``call.ended``'s fields: times, durations, result and reasons, who hung up, queue, transfers, missed."""
        outcome = call.outcome
        result = outcome.result if outcome is not None else "unknown"
        answered_at = call.answered_at
        fields: dict[str, object] = {
            "started_at": iso(call.created_at),
            "answered_at": iso(answered_at),
            "ended_at": iso(ended_at),
            "duration_s": round(max(0.0, ended_at - call.created_at), 3),
            "talk_s": round(max(0.0, ended_at - answered_at), 3) if answered_at is not None else 0.0,
            "result": result,
            "reason": outcome.reason if outcome is not None else None,
            "hangup_cause": outcome.hangup_cause if outcome is not None else None,
            "hangup_cause_text": outcome.hangup_cause_text if outcome is not None else None,
            "dial_status": outcome.dial_status if outcome is not None else None,
            "operator_result": outcome.operator.result if outcome is not None and outcome.operator else None,
            "hung_up_by": call.hung_up_by,
            "queue": call.queue,
            "agent": call.agent,
            "transfers": [transfer_fields(transfer) for transfer in call.transfers],
            "missed": self.direction(call) == "inbound" and result != "answered",
            "recording": self.recording_url(call, ended_at) if self.recording_url is not None else None,
        }
        if call.end_unseen:
            fields["reconciled"] = True
        if (call.end_unseen and call.cdr_ended_at is None) or call.start_unseen:
            fields["approximate"] = True
        return fields

    def _event(self, name: str, call: Call, at: float, fields: Mapping[str, object]) -> LifecycleEvent:
        body: dict[str, object] = {
            "call_id": call.id,
            "pbx": pbx_of(call.id),
            "direction": self.direction(call),
            "from": call.from_,
            "to": call.routed_to if call.routed_to is not None else call.to,
            "operator": call.origin.from_ if call.origin is not None else None,
            "caller_name": call.first.caller_name if call.first is not None else None,
            **fields,
            "timestamp": utc_timestamp(at),
            "client_state": call.client_state,
        }
        return LifecycleEvent(name, call.id, body)
