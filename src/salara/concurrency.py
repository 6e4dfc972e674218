"""How many requests to keep in flight to one CRM endpoint: AIMD with slow start, pure.

The rule is TCP's congestion control (RFC 5681) with the CRM's answers as
the signals, because a CRM behind nginx/PHP fails the way a congested link
does: it times out, refuses connections or answers 5xx/429 when pushed past
what it can take, and gives no other reliable sign of its capacity.

- **Slow start**: from ``initial``, each answer that found requests waiting
  for a slot adds one (so the limit doubles per round trip), until the first
  overload or until latency inflates.
- **Additive increase**: after that, each such answer adds ``1 / limit``
  (about one per round trip).
- **Multiplicative decrease**: an overload (timeout, connection error, 5xx,
  429) halves the limit, at most once per round trip (the requests in flight
  when it happened fail together and count as one signal).
- **Latency guard**: growth holds while the smoothed latency, or the age of
  the oldest request still in flight, is over twice the lowest latency seen
  (plus 5 ms): requests queue inside the CRM, where more in flight buys only
  latency.
- **Stalls**: a request in flight four times longer than the smoothed
  latency (plus 100 ms) while others answer is stuck: the limit drops by one
  for it at once, before its timeout. A CRM with a small listen backlog
  leaves the connections it cannot serve unanswered, and those time out only
  seconds later, while the ones it serves answer fast and would otherwise
  keep the limit growing. One each, not half: each stuck request says
  precisely "one more than the CRM serves". The level it stalled at is not
  reached again for ``PROBE_INTERVAL_S``: each probe costs one event its
  timeout.

Growth needs a backlog: a limit that is not used is not raised. The limit
stays within ``1 .. ceiling``. Times are seconds on the caller's monotonic
clock.
"""

from __future__ import annotations

from typing import Final

SMOOTHING: Final = 0.2
"""Weight of the newest latency in the moving average."""
INFLATION: Final = 2.0
INFLATION_SLACK_S: Final = 0.005
STALL: Final = 4.0
STALL_SLACK_S: Final = 0.1
PROBE_INTERVAL_S: Final = 10.0
"""After a stall, how long the limit stays below the level it stalled at."""
MIN_LATENCY_DECAY: Final = 1.001
"""Per answer, the lowest latency seen creeps up by this factor, so one lucky answer long ago does not rule."""


class AdaptiveLimit:
    """The number of requests allowed in flight to one endpoint (see the module doc).

    ``ceiling`` is ``[outbox] concurrency``; ``initial`` (default 8, at most
    the ceiling) is where slow start begins. Raises ValueError unless
    ``1 <= initial <= ceiling``.
    """

    def __init__(self, ceiling: int, initial: int = 8) -> None:
        initial = min(initial, ceiling)
        if initial < 1:
            raise ValueError("the limit's ceiling and start must be at least 1")
        self.ceiling = ceiling
        self._value = float(initial)
        self._slow_start = True
        self._smoothed_s: float | None = None
        self._lowest_s: float | None = None
        self._calm_after = 0.0
        self._stall_level = float("inf")
        self._stall_until = 0.0
        self.decreases = 0
        """How many times the limit was cut."""

    @property
    def value(self) -> int:
        """Requests allowed in flight now (1 .. ceiling)."""
        return int(self._value)

    @property
    def slow_start(self) -> bool:
        """True until the first overload or latency inflation."""
        return self._slow_start

    @property
    def stall_after_s(self) -> float:
        """A request in flight longer than this is stuck: tell :meth:`stalled` (once for it)."""
        return float("inf") if self._smoothed_s is None else STALL * self._smoothed_s + STALL_SLACK_S

    def answered(self, latency_s: float, backlog: bool, oldest_s: float = 0.0, now: float = 0.0) -> None:
        """An answer that is no overload came after ``latency_s``, at ``now``.

        ``backlog``: events waited for a slot; ``oldest_s``: how long the
        oldest request still in flight has been under way.
        """
        previous = self._smoothed_s
        smoothed = latency_s if previous is None else previous + SMOOTHING * (latency_s - previous)
        self._smoothed_s = smoothed
        lowest = self._lowest_s
        self._lowest_s = latency_s if lowest is None else min(latency_s, lowest * MIN_LATENCY_DECAY)
        if not backlog:
            return
        if max(smoothed, oldest_s) > INFLATION * self._lowest_s + INFLATION_SLACK_S:
            self._slow_start = False  # queueing in the CRM: hold
            return
        step = 1.0 if self._slow_start else 1.0 / self._value
        top = float(self.ceiling) if now >= self._stall_until else min(self.ceiling, self._stall_level - 1)
        self._value = max(self._value, min(top, self._value + step))

    def stalled(self, now: float) -> None:
        """One request in flight is stuck at ``now`` (see :attr:`stall_after_s`): one fewer."""
        self._slow_start = False
        self._stall_level = min(self._value, self._stall_level) if now < self._stall_until else self._value
        self._stall_until = now + PROBE_INTERVAL_S
        self._value = max(1.0, self._value - 1)
        self.decreases += 1

    def overloaded(self, now: float) -> None:
        """A timeout, connection error, 5xx or 429 at ``now``: halve, once per round trip."""
        self._slow_start = False
        if now < self._calm_after:
            return
        self._value = max(1.0, self._value / 2)
        self.decreases += 1
        round_trip_s = self._smoothed_s if self._smoothed_s is not None else 1.0
        self._calm_after = now + max(round_trip_s, 0.05)
