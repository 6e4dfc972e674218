"""Routing decisions, circuit breaker and answer cache: pure, time passed in."""

from __future__ import annotations

from salara.routing.breaker import CircuitBreaker
from salara.routing.cache import AnswerCache
from salara.routing.decision import Candidate, Source, candidates, choose

ROUTES = {"5551001": "8002"}
GOOD = (0,)


def test_candidates_in_order_without_repeats() -> None:
    assert candidates("5551001", "8003", Source.CRM, ROUTES, "710") == [
        Candidate("8003", Source.CRM),
        Candidate("8002", Source.TABLE),
        Candidate("710", Source.DEFAULT),
    ]
    assert candidates("5551001", "8002", Source.CACHE, ROUTES, "710") == [
        Candidate("8002", Source.CACHE),
        Candidate("710", Source.DEFAULT),
    ]
    assert candidates("999", None, Source.CRM, ROUTES, "") == []


def test_first_good_state_wins_then_fallbacks() -> None:
    options = candidates("5551001", "8003", Source.CRM, ROUTES, "710")
    assert choose(options, {"8003": 0, "8002": 0, "710": 0}, GOOD).exten == "8003"
    unavailable = choose(options, {"8003": 4, "8002": 0, "710": 0}, GOOD)
    assert (unavailable.exten, unavailable.source) == ("8002", Source.TABLE)
    assert choose(options, {"8003": 4, "8002": 1, "710": 0}, GOOD).source == Source.DEFAULT
    none = choose(options, {"8003": 4, "8002": 1, "710": -1}, GOOD)
    assert (none.exten, none.source) == (None, Source.NONE)
    assert "8003" in none.reason and "710" in none.reason
    assert choose(options, {"8003": 4, "8002": 1, "710": 0}, (0, 1)).exten == "8002"


def test_unknown_state_is_taken_on_trust() -> None:
    options = candidates("5551001", "8003", Source.CRM, ROUTES, "710")
    assert choose(options, {}, GOOD).exten == "8003"
    assert choose(options, {"8003": 4}, GOOD).reason == (
        "crm 8003 refused: state 4 Unavailable; table 8002 chosen: state unknown, taken on trust"
    )


def test_reason_lists_every_refused_candidate_with_its_state_then_the_chosen_one() -> None:
    options = candidates("5557012", "9999", Source.CRM, ROUTES, "710")
    chosen = choose(options, {"9999": -1, "710": 0}, GOOD)
    assert (chosen.exten, chosen.source) == ("710", Source.DEFAULT)
    assert chosen.reason == "crm 9999 refused: state -1 Unknown; default 710 chosen: state 0 Idle"
    first = choose(options, {"9999": 0, "710": 0}, GOOD)
    assert first.reason == "crm 9999 chosen: state 0 Idle"
    options = candidates("5551001", "8003", Source.CACHE, ROUTES, "710")
    none = choose(options, {"8003": 4, "8002": 2, "710": -1}, GOOD)
    assert none.reason == (
        "cache 8003 refused: state 4 Unavailable; table 8002 refused: state 2 Busy; "
        "default 710 refused: state -1 Unknown; no good destination"
    )
    assert choose([], {}, GOOD).reason == "no destination known"


def test_circuit_breaker_opens_and_tries_once_after_cooldown() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=30)
    for now in (0, 1, 2):
        assert breaker.allow(now)
        breaker.failure(now)
    assert breaker.open and not breaker.allow(10)
    assert breaker.allow(33)  # half-open: one trial
    assert not breaker.allow(33.1)
    breaker.failure(34)
    assert not breaker.allow(40)
    assert breaker.allow(65)
    breaker.success()
    assert not breaker.open and breaker.allow(66) and breaker.allow(66)


def test_answer_cache_bounded_by_age_and_size() -> None:
    cache = AnswerCache(max_age_s=60, max_entries=2)
    cache.put("a", "8001", now=0)
    cache.put("b", "8002", now=1)
    cache.put("c", "8003", now=2)
    assert cache.get("a", now=3) is None  # evicted by size
    assert cache.get("b", now=61) == "8002"
    assert cache.get("b", now=62) is None  # too old
    assert len(cache) == 1
