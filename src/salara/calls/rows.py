"""The records of call tracking (:mod:`salara.calls.tracking`): tracked calls, and the rows a store keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from salara.calls.call import Call, Origin
from salara.calls.events import CrmEvent

if TYPE_CHECKING:
    from salara.calls.registry import CallRegistry


@dataclass(slots=True)
class TrackedCall:
    """A call salara placed or routed: who it is between; its channels are the registry's."""

    linkedid: str
    caller: str
    exten: str
    source: str
    """``makecall`` or ``route``."""
    started_at: float
    """Unix seconds."""
    started_mono: float
    registry: CallRegistry = field(repr=False, compare=False)
    seen_channel: bool = False
    answered_at: float | None = None
    """When the call was answered, as last stored (Unix seconds)."""

    @property
    def channels(self) -> set[str]:
        """Uniqueids of the call's channels that have not hung up yet."""
        return set(self.registry.live_channels(self.linkedid))


CallRow = tuple[str, str, str, str, float, str | None, float | None]
"""A tracked call to store: ``(linkedid, caller, exten, source, started_at, client_state, answered_at)``.

Times are Unix seconds; ``client_state`` is the CRM's (``/v1/calls``, the
routing answer), ``answered_at`` when the call was answered, both None when
there is none yet: a call that ends while salara is down is summed up with them.
"""
ChannelRow = tuple[str, str, str, int, str, str]
"""A live channel to store: ``(uniqueid, linkedid, name, state, caller, exten)``."""


@dataclass(frozen=True, slots=True)
class TrackingChanges:
    """Tracking to store (or, from :meth:`CallTracker.restore`'s point of view, stored).

    ``calls`` and ``channels`` are rows to write (insert or replace), ``ended``
    Linkedids of calls no longer tracked and ``removed`` Uniqueids of channels
    no longer kept, both to delete.
    """

    calls: list[CallRow] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    channels: list[ChannelRow] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.calls or self.ended or self.channels or self.removed)


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one :meth:`~salara.calls.tracking.CallTracker.sweep` found."""

    ended: list[str]
    """Linkedids of the tracked calls whose tracking ended."""
    hangups: list[CrmEvent]
    """Synthesized Hangups of the channels gone unseen, per the ``hangup`` mode."""
    missed: int
    """Channels that were gone unseen (a Hangup synthesized or not)."""


def call_row(tracked: TrackedCall, call: Call | None) -> CallRow:
    """The row to store for ``tracked``, with its registry ``call``'s client state and answer time.

    ``tracked.answered_at`` becomes the answer time stored.
    """
    if call is not None:
        tracked.answered_at = call.answered_at
    client_state = call.client_state if call is not None else None
    return (
        tracked.linkedid,
        tracked.caller,
        tracked.exten,
        tracked.source,
        tracked.started_at,
        client_state,
        tracked.answered_at,
    )


def told_by_store(call: Call, row: CallRow) -> None:
    """What a stored tracked call tells the registry's restored ``call``: who placed or routed it, when, and its state.

    Its start, its origin (a call salara placed) or destination (one it
    routed), the CRM's ``client_state`` and when it was answered, if it was
    before the restart.
    """
    _, caller, exten, source, started_at, client_state, answered_at = row
    call.created_at = min(call.created_at, started_at)
    if source == "makecall" and call.origin is None:
        call.origin = Origin(caller, exten, "")
        # Restored before its origin was known, an Up operator's channel counted as the answer:
        # it is the operator's leg; the call's answer is the called side's.
        operator = call.channels.get(call.id)
        if operator is not None and operator.answered_at is not None:
            call.operator_answered_at = operator.answered_at
        others = [c.answered_at for c in call.channels.values() if c is not operator and c.answered_at is not None]
        call.answered_at = min(others, default=None)
    elif source == "route":
        call.routed_to = exten
    if client_state is not None and call.client_state is None:
        call.client_state = client_state
    if answered_at is not None and (call.answered_at is None or answered_at < call.answered_at):
        call.answered_at = answered_at
