"""Smoke tests of the benchmarks that need the real Asterisk (bench/api.py, bench/routing.py).

Tiny sizes; they assert that figures are produced, never on speed.
"""

from __future__ import annotations

import pytest

from bench import api, connections, openloop, routing

pytestmark = pytest.mark.usefixtures("asterisk")


def test_api_bench_produces_figures() -> None:
    result = api.run(duration_s=1.0, clients=10)
    for latencies in (result.raw, result.loaded, result.single):
        assert latencies.count > 0 and latencies.rate > 0
        assert 0 < latencies.p50_s <= latencies.p99_s
    assert result.loaded.errors == 0 and result.single.errors == 0
    assert '"result"' in result.answer
    assert result.ratio > 0 and result.salara_cpu > 0


def test_routing_bench_produces_figures() -> None:
    result = routing.run(calls=10, warmup=2)
    assert result.calls == 10
    assert sum(result.sources.values()) == 10
    assert 0 < result.crm_p50_s < result.total_p50_s
    assert result.added_p50_s <= result.added_p99_s


def test_connections_bench_produces_figures_for_salara_and_the_bare_app() -> None:
    [result] = connections.run(duration_s=1.0, clients=4)
    for figures in (result.salara, result.bare):
        for load in (figures.close, figures.keep_alive):
            assert load.latencies.count > 0 and load.latencies.errors == 0
            assert 0 < load.latencies.p50_s <= load.latencies.p99_s
            assert load.server_cpu > 0 and load.generator_cpu > 0
        assert figures.single.count > 0 and figures.single.errors == 0
    assert result.ratio("close") > 0 and result.ratio("keep_alive") > 0
    assert result.answer.startswith('{"result":')
    notes: list[str] = []
    rows = connections.rows(1.0, notes, rounds=1)
    assert [row.target for row in rows] == ["≥ 0.8 × bare, p99 ≤ 5 ms", "≥ 0.5 × bare", "p50 ≤ 0.4 ms"]
    assert all(row.met in ("yes", "no") and "req/s" in rows[0].figure for row in rows)
    assert "wrk -t2 -c20" in notes[0]


def test_openloop_bench_produces_figures_for_salara_and_the_bare_app() -> None:
    result = openloop.run(rates=(100.0, 300.0), duration_s=0.5, connections=4)
    for figures in (result.salara, result.bare):
        assert [f.rate for f in figures] == [100.0, 300.0]
        for f in figures:
            assert f.sent == f.answered == int(f.rate * 0.5) and f.errors == 0
            assert 0 < f.p50_s <= f.p99_s <= f.p999_s <= f.max_s
            assert f.generator_cpu > 0
    assert result.highest_under(result.bare, p99_s=60.0) == 300.0
