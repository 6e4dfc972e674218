"""Smoke tests of the benchmarks that need the real Asterisk (bench/api.py, bench/routing.py).

Tiny sizes; they assert that figures are produced, never on speed.
"""

from __future__ import annotations

import pytest

from bench import api, routing

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
