"""Log lines of one kind at most once per interval, counting the ones held back (time passed in)."""

from __future__ import annotations

import logging


class Throttle:
    """At most one go per ``interval_s`` (monotonic seconds passed in); the goes held back are counted.

    >>> throttle = Throttle(10.0)
    >>> throttle.due(0.0), throttle.due(3.0), throttle.due(4.0), throttle.due(10.5)
    (0, None, None, 2)
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: float | None = None
        self._held = 0

    def due(self, now: float) -> int | None:
        """None while within ``interval_s`` of the last go (this one is counted as held back).

        Otherwise the number held back since the last go (0 for the first), and ``now`` is the last go.
        """
        if self._last is not None and now - self._last < self.interval_s:
            self._held += 1
            return None
        held, self._last, self._held = self._held, now, 0
        return held


class RateLimitedWarning:
    """WARNING lines of one kind on ``logger``, at most one per ``interval_s``; the held-back ones are counted."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self.logger = logger
        self.throttle = Throttle(interval_s)

    def warn(self, now: float, message: str, *args: object) -> None:
        """Log ``message % args`` unless one was logged less than ``interval_s`` before ``now`` (monotonic s)."""
        held = self.throttle.due(now)
        if held is None:
            return
        if held:
            message += " (and %d more like it since the last)"
            args = (*args, held)
        self.logger.warning(message, *args)
