"""The routing journal (the last 1,000 decisions), ``GET /v1/routing/decisions`` and the latency series."""

from __future__ import annotations

import httpx

from salara import config
from salara.api.app import create_app
from salara.control import CallControl
from salara.routing.breaker import CircuitBreaker
from salara.routing.decision import Candidate, Decision, Source, choose
from salara.routing.journal import CrmRecord, DecisionJournal, candidate_records
from salara.series import LatencySeries
from tests.unit.test_api_security import LOCAL, STATE_ONLY, WITH_TOKENS, FakeAMI, bearer, section

GOOD = (0, 1)
BOSS = "unit-test-boss-0123456789abcdefghijklmnopqr"
TOKENS = WITH_TOKENS + section("boss", BOSS, rights="state,admin")
OPTIONS = [Candidate("8002", Source.CRM), Candidate("9001", Source.TABLE), Candidate("710", Source.DEFAULT)]


def record(journal: DecisionJournal, caller: str, wall: float, call_id: str | None = None) -> None:
    states = {"8002": 4, "9001": 0, "710": 0}
    decision = choose(OPTIONS, states, GOOD)
    journal.record(
        wall=wall,
        caller=caller,
        context="phones",
        crm=CrmRecord("8002", "Anna", Source.CRM, None),
        candidates=candidate_records(OPTIONS, states, decision),
        decision=decision,
        elapsed_s=0.0123,
        call_id=call_id,
    )


def test_candidates_are_refused_until_one_is_chosen_and_the_rest_untried() -> None:
    states = {"8002": 4, "9001": None}
    decision = choose(OPTIONS, states, GOOD)  # 9001's state unknown: taken on trust
    got = candidate_records(OPTIONS, states, decision)
    assert [(c.exten, c.state, c.verdict) for c in got] == [
        ("8002", 4, "refused"),
        ("9001", None, "chosen"),
        ("710", None, "untried"),
    ]
    nowhere = candidate_records(OPTIONS, {"8002": 4, "9001": 4, "710": 4}, Decision(None, Source.NONE, ""))
    assert [c.verdict for c in nowhere] == ["refused", "refused", "refused"]


def test_the_journal_keeps_the_last_decisions_newest_first() -> None:
    journal = DecisionJournal(size=3)
    for n in range(5):
        record(journal, f"555000{n}", float(n))
    assert len(journal) == 3
    assert [(e.id, e.caller) for e in journal.recent()] == [(5, "5550004"), (4, "5550003"), (3, "5550002")]
    assert [e.caller for e in journal.recent(1)] == ["5550004"]
    assert [e.caller for e in journal.recent(caller="0003")] == ["5550003"]


class Routing:
    """What the route reads of a router: its journal and breaker."""

    def __init__(self) -> None:
        self.journal = DecisionJournal()
        self.breaker = CircuitBreaker(2, 30.0)


async def test_the_decisions_route_lists_them_with_the_breaker_for_the_state_right() -> None:
    routing = Routing()
    record(routing.journal, "5552003", 1_796_000_000.0, call_id="1796.7")
    routing.breaker.failure(0.0)
    routing.breaker.failure(0.0)  # open
    app = create_app(CallControl.over(FakeAMI(), config.build(config.parse_text(TOKENS))), router=routing)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app, client=LOCAL)
    async with httpx.AsyncClient(transport=transport, base_url="http://salara") as client:
        assert (await client.get("/v1/routing/decisions")).status_code == 401
        answer = await client.get("/v1/routing/decisions", headers=bearer(BOSS))
        assert answer.status_code == 200
        body = answer.json()
        (decision,) = body["decisions"]
        assert decision["caller"] == "5552003" and decision["destination"] == "9001"
        assert decision["source"] == "table" and decision["elapsed_ms"] == 12.3
        assert decision["crm"] == {"exten": "8002", "caller_name": "Anna", "source": "crm", "error": None}
        assert [(c["exten"], c["state_text"], c["verdict"]) for c in decision["candidates"]] == [
            ("8002", "Unavailable", "refused"),
            ("9001", "Idle", "chosen"),
            ("710", "Idle", "untried"),
        ]
        assert decision["at"] == "2026-11-30T00:53:20Z"
        breaker = body["breaker"]
        assert (breaker["state"], breaker["consecutive_failures"], breaker["failures_to_open"]) == ("open", 2, 2)
        # Without admin, a token sees the decisions of the calls it sees: this call is not known to it.
        limited = await client.get("/v1/routing/decisions", headers=bearer(STATE_ONLY))
        assert limited.status_code == 200 and limited.json()["decisions"] == []
        assert (await client.get("/v1/routing/decisions?limit=0", headers=bearer(BOSS))).status_code == 422


def test_the_latency_series_is_bounded_to_the_last_hour() -> None:
    series = LatencySeries()
    for minute in range(180):  # three hours, one a minute
        series.observe(0.001 * minute, 60.0 * minute)
    points = series.points(60.0 * 179)
    assert len(points) == 61 and len(series._buckets) == 61
    assert points[0]["at"] == 60.0 * 119 and points[-1]["max_ms"] == 179.0
