"""Smoke test of the webhook delivery benchmark (bench/): figures are produced, never speed."""

from __future__ import annotations

import json
import math

import pytest

from bench.webhooks import EVENTS_PER_CALL, main, make_events, run

EVENTS = 300


def test_events_are_compat_bodies_interleaved_by_call() -> None:
    events = make_events(1_000)
    assert len(events) == 1_000
    assert len({event_id for event_id, _, _ in events}) == 1_000
    first_call = [json.loads(body)["event"] for _, key, body in events if key == events[0][1]]
    assert first_call == ["Newchannel", "Newexten", "Newexten", "AgentConnect", "Hangup"]
    assert len({key for _, key, _ in events}) == 1_000 // EVENTS_PER_CALL
    assert events[1][1] != events[0][1]  # calls interleave


async def test_both_ways_deliver_every_event_and_report_figures() -> None:
    baseline, salara, adds_per_s = await run(EVENTS, concurrency=4, rate=2_000)
    for figures in (baseline, salara):
        assert figures.events == EVENTS
        assert figures.per_s > 0 and math.isfinite(figures.per_s)
        assert 0 <= figures.p50_ms <= figures.p99_ms
    assert adds_per_s > 0


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--events", "100", "--concurrency", "2", "--rate", "2000"])
    out = capsys.readouterr().out
    assert "(a) baseline" in out and "(b) salara" in out and "ratio (b)/(a)" in out
