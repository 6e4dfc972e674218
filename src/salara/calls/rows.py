"""The records of call tracking (:mod:`salara.calls.tracking`): tracked calls, and the rows a store keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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

    @property
    def channels(self) -> set[str]:
        """Uniqueids of the call's channels that have not hung up yet."""
        return set(self.registry.live_channels(self.linkedid))


CallRow = tuple[str, str, str, str, float]
"""A tracked call to store: ``(linkedid, caller, exten, source, started_at)``, ``started_at`` Unix seconds."""
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
