"""Jittered exponential backoff, shared by everything that retries (AMI reconnects, CRM deliveries).

Full jitter with a floor: the delay is uniform between ``minimum_s`` and the
exponential ceiling, not between 0 and it. Full jitter because it spreads the
retries of many clients the most and does the least total work (Marc Brooker,
"Exponential Backoff And Jitter", AWS Architecture Blog, 2015): after an
Asterisk restart or a CRM outage every salara process retries at once, and
equal jitter's fixed half-ceiling keeps them bunched. The floor keeps a dead
peer from being hammered by near-zero delays, which plain full jitter allows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

MAX_DOUBLINGS: Final = 32
"""Attempts past this many no longer double the ceiling (``maximum_s`` caps it long before)."""


def jittered_backoff_s(
    attempt: int,
    minimum_s: float,
    maximum_s: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry, 1, 2...).

    The ceiling is ``minimum_s * 2**attempt``, capped at ``maximum_s`` (and never
    below ``minimum_s``); the delay is ``minimum_s + rng() * (ceiling - minimum_s)``,
    so uniform in ``[minimum_s, ceiling]`` for ``rng`` uniform in ``[0, 1)``.
    A negative ``attempt`` counts as 0. Raises :class:`ValueError` for a
    negative ``minimum_s`` or ``maximum_s``.

    >>> [jittered_backoff_s(attempt, 0.25, 5.0, rng=lambda: 0.5) for attempt in (0, 3, 10)]
    [0.25, 1.125, 2.625]
    """
    if minimum_s < 0 or maximum_s < 0:
        raise ValueError(f"backoff bounds must not be negative: {minimum_s}, {maximum_s}")
    doublings = min(max(attempt, 0), MAX_DOUBLINGS)
    ceiling = max(minimum_s, min(maximum_s, minimum_s * (1 << doublings)))
    return minimum_s + rng() * (ceiling - minimum_s)
