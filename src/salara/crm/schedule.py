"""When a delivery that failed is tried again, and when its schedule ends: the retry schedule.

Pure. The first attempt is immediate; after a failure the next is after a
jittered exponential backoff (:func:`salara.backoff.jittered_backoff_s`, from
``retry_min_s`` doubling up to ``retry_max_s``), for ``retry_for_s`` in all
from when the event was stored. Then the delivery is *dead*: kept, listed,
sent again by a retry or a replay, and the next events of its call go on.

- ``Retry-After`` on a 429 or 503 (seconds, or an HTTP date: RFC 9110
  §10.2.3) sets the earliest next attempt, when later than the backoff.
- A 4xx other than 408, 409, 425 and 429 will not change by itself (the body
  stays the same): 5 attempts in all.
- ``410 Gone`` is the endpoint's decision, not the schedule's
  (:class:`~salara.crm.delivery.DeliveryWorker`).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from salara.backoff import jittered_backoff_s
from salara.store.records import Outcome

RETRIED_4XX: Final = frozenset({408, 409, 425, 429})
"""Client errors that may pass by themselves (timeout, conflict, too early, too many requests)."""
REFUSED_TRIES: Final = 5
"""Attempts in all of a delivery refused with any other 4xx."""
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""Answers whose ``Retry-After`` is honoured."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """The retry schedule's bounds, seconds: first backoff, longest backoff, whole schedule."""

    retry_min_s: float = 1.0
    retry_max_s: float = 300.0
    retry_for_s: float = 3 * 86400.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_min_s <= self.retry_max_s or self.retry_for_s <= 0:
            raise ValueError("retry delays must be positive, retry_min <= retry_max, retry_for positive")

    def after_failure(
        self,
        *,
        attempts: int,
        created_at: float,
        at: float,
        status: int | None,
        retry_after_s: float | None = None,
        rng: Callable[[], float] | None = None,
    ) -> tuple[Outcome, float]:
        """What follows failed attempt number ``attempts + 1``, made at ``at``: ``("retry", when)`` or ``("dead", 0)``.

        ``attempts`` counts the attempts before this one; ``created_at`` is
        when the event was stored (Unix s); ``status`` the HTTP status (None:
        no answer); ``retry_after_s`` the answer's ``Retry-After`` in seconds
        from ``at`` (:func:`retry_after_s`), used with a 429 or 503 only.
        """
        refused = status is not None and 400 <= status < 500 and status not in RETRIED_4XX
        if refused and attempts + 1 >= REFUSED_TRIES:
            return "dead", 0.0
        args = (attempts, self.retry_min_s, self.retry_max_s)
        delay_s = jittered_backoff_s(*args) if rng is None else jittered_backoff_s(*args, rng=rng)
        if retry_after_s is not None and status in RETRY_AFTER_STATUSES:
            delay_s = max(delay_s, retry_after_s)
        when = at + delay_s
        if when > created_at + self.retry_for_s:
            return "dead", 0.0
        return "retry", when


def retry_after_s(value: bytes | str | None, now: float) -> float | None:
    """Seconds from ``now`` (Unix s) that a ``Retry-After`` value asks to wait; None when absent or unreadable.

    >>> retry_after_s(b"2", 0.0), retry_after_s("Thu, 01 Jan 1970 00:01:00 GMT", 30.0), retry_after_s(b"soon", 0.0)
    (2.0, 30.0, None)
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    seconds = when.timestamp() - now
    return max(seconds, 0.0) if math.isfinite(seconds) else None
