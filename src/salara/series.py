"""A bounded series of durations over the last hour, in one-minute buckets, for the console's charts.

Pure: the time is an argument (``wall``, Unix seconds: the buckets are shown
against the clock). At most ``span_s / step_s + 1`` buckets are kept, each a
count, a sum and a maximum, so memory does not grow with traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SPAN_S: Final = 3_600.0
STEP_S: Final = 60.0


@dataclass(slots=True)
class Bucket:
    """The durations seen in one step: how many, their sum and the largest, seconds."""

    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0


class LatencySeries:
    """Durations seen in the last ``span_s`` seconds, grouped by ``step_s``-second steps of the clock."""

    def __init__(self, span_s: float = SPAN_S, step_s: float = STEP_S) -> None:
        self.span_s = span_s
        self.step_s = step_s
        self._buckets: dict[int, Bucket] = {}

    def observe(self, seconds: float, wall: float) -> None:
        """Count one duration (seconds; negative ones count as 0) that ended at ``wall``."""
        step = int(wall // self.step_s)
        bucket = self._buckets.get(step)
        if bucket is None:
            bucket = self._buckets[step] = Bucket()
            self._prune(step)
        value = max(0.0, seconds)
        bucket.count += 1
        bucket.total_s += value
        bucket.max_s = max(bucket.max_s, value)

    def _prune(self, step: int) -> None:
        oldest = step - int(self.span_s // self.step_s)
        for old in [s for s in self._buckets if s < oldest]:
            del self._buckets[old]

    def points(self, wall: float) -> list[dict[str, float | int]]:
        """The steps of the last ``span_s`` seconds that saw a duration, oldest first.

        Each is ``{"at": <step start, Unix seconds>, "count": n, "mean_ms": ..., "max_ms": ...}``.

        >>> series = LatencySeries()
        >>> series.observe(0.010, 120.0); series.observe(0.030, 150.0)
        >>> series.points(170.0)
        [{'at': 120.0, 'count': 2, 'mean_ms': 20.0, 'max_ms': 30.0}]
        >>> series.observe(1.0, 7_000.0)  # an hour later: the old minute is gone
        >>> series.points(7_000.0)
        [{'at': 6960.0, 'count': 1, 'mean_ms': 1000.0, 'max_ms': 1000.0}]
        """
        now = int(wall // self.step_s)
        oldest = now - int(self.span_s // self.step_s)
        return [
            {
                "at": step * self.step_s,
                "count": bucket.count,
                "mean_ms": round(bucket.total_s / bucket.count * 1000, 3),
                "max_ms": round(bucket.max_s * 1000, 3),
            }
            for step, bucket in sorted(self._buckets.items())
            if oldest <= step <= now
        ]
