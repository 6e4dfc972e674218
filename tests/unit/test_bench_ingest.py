"""Smoke test of the AMI ingest benchmark (bench/): counts and figures, never speed."""

from __future__ import annotations

import re
from pathlib import Path

from bench.ami_stream import HEAD, build_stream, chunks, stream_chunks
from bench.ingest import Round, alternating, baseline_parse, full_path, median_baseline, median_round, protocol_parse

EVENTS = 2_000


def test_stream_is_deterministic_and_chunked_losslessly() -> None:
    stream = build_stream(EVENTS, seed=7)
    assert stream.startswith(HEAD)
    assert stream == build_stream(EVENTS, seed=7)
    assert stream.count(b"\r\n\r\n") == EVENTS + 1  # the Login response
    reads = chunks(stream, seed=7)
    assert b"".join(reads) == stream
    assert reads == list(stream_chunks(EVENTS, seed=7))
    assert all(256 <= len(read) <= 65536 for read in reads[:-1])


def test_both_parsers_see_every_event() -> None:
    reads = chunks(build_stream(EVENTS))
    base_events, base_seconds = baseline_parse(reads)
    proto_events, proto_seconds = protocol_parse(reads)
    assert base_events == proto_events == EVENTS
    assert base_seconds > 0 and proto_seconds > 0


def test_full_path_tracks_filters_and_stores(tmp_path: Path) -> None:
    events, stored, seconds = full_path(chunks(build_stream(EVENTS)), tmp_path)
    assert events == EVENTS
    # Every mode on "all calls": every Newchannel/Hangup/Newexten/AgentConnect is stored.
    stream = build_stream(EVENTS).decode()
    wanted = sum(stream.count(f"Event: {name}\r\n") for name in ("Newchannel", "Hangup", "Newexten", "AgentConnect"))
    assert stored == wanted > 0
    assert seconds > 0


def test_full_path_with_lifecycle_events_stores_them_beside_the_crm_events(tmp_path: Path) -> None:
    _, compat_stored, _ = full_path(chunks(build_stream(EVENTS)), tmp_path)
    events, stored, seconds = full_path(chunks(build_stream(EVENTS)), tmp_path, lifecycle=True)
    assert events == EVENTS
    # Every call of the stream starts: at least one call.started per call besides the SPEC §2 events.
    calls = len(set(re.findall(r"\r\nLinkedid: ([^\r]+)\r\n", build_stream(EVENTS).decode())))
    assert stored >= compat_stored + calls > compat_stored
    assert seconds > 0


def test_rounds_alternate_the_baseline_and_the_full_path_and_the_median_round_is_reported() -> None:
    rounds = alternating(EVENTS, 2)
    assert len(rounds) == 2
    assert all(r.same_events and r.stored > 0 and r.baseline_rate > 0 and r.full_rate > 0 for r in rounds)
    assert rounds[0].stored == rounds[1].stored  # the same stream each round
    made = [Round(100.0, 40.0, 1, True), Round(100.0, 60.0, 1, True), Round(200.0, 100.0, 1, True)]
    assert median_round(made).ratio == 0.5
    assert median_round(made[:2]).ratio == 0.4  # an even count: the lower middle one
    assert median_baseline(made) == 100.0
