"""The adaptive limit of requests in flight to a CRM (AIMD with slow start, salara.concurrency)."""

from __future__ import annotations

import pytest

from salara.concurrency import AdaptiveLimit


def test_slow_start_doubles_per_round_trip_while_events_wait() -> None:
    limit = AdaptiveLimit(256, 8)
    for _ in range(8):  # one round trip: every request in flight answers
        limit.answered(0.2, backlog=True)
    assert limit.value == 16 and limit.slow_start
    for _ in range(16):
        limit.answered(0.2, backlog=True)
    assert limit.value == 32


def test_no_growth_without_a_backlog_and_never_past_the_ceiling() -> None:
    limit = AdaptiveLimit(20, 8)
    for _ in range(100):
        limit.answered(0.01, backlog=False)
    assert limit.value == 8
    for _ in range(100):
        limit.answered(0.01, backlog=True)
    assert limit.value == 20


def test_an_overload_halves_once_per_round_trip_then_growth_is_additive() -> None:
    limit = AdaptiveLimit(256, 64)
    for _ in range(20):
        limit.answered(0.1, backlog=True)
    assert limit.value == 84
    for _ in range(30):  # the requests in flight time out together: one signal
        limit.overloaded(now=100.0)
    assert limit.value == 42 and limit.decreases == 1 and not limit.slow_start
    limit.overloaded(now=100.5)  # a round trip later: a new signal
    assert limit.value == 21 and limit.decreases == 2
    for _ in range(22):  # a round trip of answers adds about one
        limit.answered(0.1, backlog=True)
    assert limit.value == 22


def test_growth_holds_while_latency_inflates() -> None:
    limit = AdaptiveLimit(256, 8)
    limit.answered(0.010, backlog=True)
    for _ in range(50):
        limit.answered(0.200, backlog=True)  # queueing inside the CRM: 20 times the lowest latency
    assert limit.value < 16 and not limit.slow_start
    held = limit.value
    for _ in range(50):
        limit.answered(0.200, backlog=True)
    assert limit.value == held


def test_the_limit_never_goes_below_one() -> None:
    limit = AdaptiveLimit(4, 2)
    for step in range(10):
        limit.overloaded(now=float(step * 10))
    assert limit.value == 1


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        AdaptiveLimit(0)
    assert AdaptiveLimit(3, 8).value == 3  # the start is capped by the ceiling


def test_a_stuck_request_takes_one_off_and_the_level_is_not_reached_again_for_a_while() -> None:
    limit = AdaptiveLimit(256, 8)
    for _ in range(4):
        limit.answered(0.02, backlog=True, now=1.0)
    assert limit.value == 12
    assert limit.stall_after_s == pytest.approx(4 * 0.02 + 0.1)
    limit.stalled(now=1.2)
    limit.stalled(now=1.2)
    assert limit.value == 10 and not limit.slow_start
    for _ in range(200):
        limit.answered(0.02, backlog=True, now=2.0)
    assert limit.value == 10  # below the lowest level it stalled at (12, then 11)
    for _ in range(200):
        limit.answered(0.02, backlog=True, now=20.0)  # the probe interval is over
    assert limit.value > 12
