"""The store when there is no CRM to send events to: events go to the live stream only."""

from __future__ import annotations

from collections.abc import Sequence

from salara.calls.tracking import TrackingChanges


class NoStore:
    """Keeps nothing: ``add`` hands back the ids it was given; tracking lives in memory only."""

    def add(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ids: Sequence[str] | None = None,
        tracking: TrackingChanges | None = None,
    ) -> list[str]:
        return list(ids or ())
