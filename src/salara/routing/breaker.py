"""A circuit breaker for the CRM lookup: stop asking a CRM that keeps failing, for a cool-down.

Callers go straight to the fallbacks while it is open. Pure: times are
monotonic seconds passed in by the caller.
"""

from __future__ import annotations


class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> one trial after ``cooldown_s``.

    Times are monotonic seconds passed in by the caller.
    """

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.consecutive = 0
        self.opened_at: float | None = None
        self.trial_running = False

    def allow(self, now: float) -> bool:
        """Whether a lookup may be tried now."""
        if self.opened_at is None:
            return True
        if now - self.opened_at >= self.cooldown_s and not self.trial_running:
            self.trial_running = True  # half-open: one call tries, the others fall back
            return True
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.trial_running = False

    def failure(self, now: float) -> None:
        self.consecutive += 1
        self.trial_running = False
        if self.consecutive >= self.failures:
            self.opened_at = now

    @property
    def open(self) -> bool:
        return self.opened_at is not None
