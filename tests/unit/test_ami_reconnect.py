"""The jittered backoff the AMI client reconnects with (salara.backoff)."""

from __future__ import annotations

import pytest

from salara.backoff import jittered_backoff_s


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(0, 0.2, 0.2), (1, 0.2, 0.4), (2, 0.2, 0.8), (4, 0.2, 3.2), (5, 0.2, 5.0), (10_000, 0.2, 5.0), (-3, 0.2, 0.2)],
)
def test_full_jitter_between_the_floor_and_the_exponential_ceiling(attempt: int, low: float, high: float) -> None:
    assert jittered_backoff_s(attempt, 0.2, 5.0, rng=lambda: 0.0) == pytest.approx(low)
    assert jittered_backoff_s(attempt, 0.2, 5.0, rng=lambda: 1.0) == pytest.approx(high)
    middle = jittered_backoff_s(attempt, 0.2, 5.0, rng=lambda: 0.5)
    assert middle == pytest.approx((low + high) / 2)


def test_default_rng_stays_in_bounds() -> None:
    delays = [jittered_backoff_s(3, 0.25, 5.0) for _ in range(500)]
    assert all(0.25 <= delay <= 2.0 for delay in delays)
    assert len(set(delays)) > 400  # jittered, not a fixed step


def test_floor_wins_over_a_smaller_maximum_and_negative_bounds_are_refused() -> None:
    assert jittered_backoff_s(3, 0.2, 0.1, rng=lambda: 0.9) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        jittered_backoff_s(1, -0.1, 5.0)
    with pytest.raises(ValueError):
        jittered_backoff_s(1, 0.1, -5.0)
