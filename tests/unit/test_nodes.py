"""Two nodes: the leader lock on a real PostgreSQL, the store's fence, a follower's pipeline taking the lead."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from salara.calls.lifecycle import CallLifecycle
from salara.calls.tracking import CallTracker
from salara.config import Event as Modes
from salara.events.pipeline import EventPipeline
from salara.events.resync import Resynchronizer
from salara.nodes import LeaderGauge, Node
from salara.store.interface import StoreFailure
from salara.store.leadership import FENCE, Leadership
from salara.store.postgres import PostgresStore
from salara.store.sqlite import Outbox
from tests.unit.test_calls import events
from tests.unit.test_event_pipeline import FakeAmi, bodies, feed, sweep, until_first_hangup

STREAM = "inbound_ua_to_queue.txt"
QUEUE_CHANNELS = ["Local/agent1@queue-agents-00000000;1", "Local/agent1@queue-agents-00000000;2", "PJSIP/8001-00000000"]


async def until(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(leadership: Leadership) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(leadership.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])


async def test_one_node_leads_and_the_other_takes_over_when_its_session_ends(pg_url: str) -> None:
    a, b = Leadership(pg_url, node="a", retry_s=0.1), Leadership(pg_url, node="b", retry_s=0.1)
    told: list[tuple[str, bool]] = []
    a.add_listener(lambda leading: told.append(("a", leading)))
    b.add_listener(lambda leading: told.append(("b", leading)))
    async with running(a) as task_a:
        await until(lambda: a.leading)
        async with running(b):
            await asyncio.sleep(0.5)  # b tries several times meanwhile
            assert (a.leading, b.leading) == (True, False)
            assert a.pid is not None and b.pid is None
            task_a.cancel()  # a's session ends: the server releases the lock
            await asyncio.wait([task_a])
            assert not a.leading and a.pid is None, "stepped down at once"
            await until(lambda: b.leading, timeout_s=5)
            assert (a.terms, b.terms) == (1, 1)
    assert told == [("a", True), ("a", False), ("b", True), ("b", False)]


async def test_the_store_refuses_an_add_from_a_node_that_no_longer_holds_the_lock(pg_url: str) -> None:
    store = PostgresStore(pg_url, max_rows=1000, node="a")
    a = Leadership(pg_url, node="a", retry_s=0.1)
    try:
        async with running(a) as task:
            await until(lambda: a.leading)
            store.fence_pid = a.pid
            assert len(store.add([("call-1", b"{}")])) == 1, "the leader stores"
            old_pid = a.pid
            task.cancel()
            await asyncio.wait([task])
        with psycopg.connect(pg_url, autocommit=True) as db:  # the server ends the session soon after the close
            await until(lambda: db.execute(FENCE, (old_pid,)).fetchone() is None)
        store.fence_pid = old_pid  # a deposed leader that has not noticed yet
        with pytest.raises(StoreFailure, match="no longer leads"):
            store.add([("call-1", b"{}")])
        assert store.depth() == 1, "nothing stored by it"
        store.fence_pid = None
        store.add([("call-1", b"{}")])
        store.recount()
        assert store.depth() == 2
    finally:
        store.close()


def test_a_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Leadership("postgresql://nowhere/db", retry_s=0)


def pipeline_of(outbox: Outbox, modes: Modes) -> EventPipeline:
    tracker = CallTracker(modes)
    lifecycle = CallLifecycle(tracker.registry)
    return EventPipeline(tracker, outbox, extended=True, lifecycle=lifecycle, lifecycle_webhook=True)


async def test_a_follower_stores_nothing_and_on_taking_the_lead_reconciles_what_ended_in_the_gap(
    tmp_path: Path,
) -> None:
    modes = Modes(newchannel=2, hangup=2, payload="extended", lifecycle=True)
    outbox = Outbox(tmp_path / "outbox.db", max_rows=1000)
    leader, follower = pipeline_of(outbox, modes), pipeline_of(outbox, modes)
    follower.follow()
    # The leader stores the call until its first Hangup, then dies; the follower saw every event.
    first_part = until_first_hangup(STREAM)
    await feed(leader, first_part)
    await feed(follower, events(STREAM))
    stored = bodies(outbox)
    assert [b["event"] for b in stored if "event" in b] == ["Newchannel"] * 3
    assert follower.tracker.registry.active() == [], "the follower's model saw the call end"

    follower.lead(outbox.load_tracking())
    await sweep(follower, FakeAmi(), grace_s=30)  # Asterisk has no channel left
    after = bodies(outbox)[len(stored) :]
    hangups = [b for b in after if b.get("event") == "Hangup"]
    assert sorted(b["chan"] for b in hangups) == QUEUE_CHANNELS
    assert all(b["synthesized"] for b in hangups)
    ended = [b for b in after if b.get("type") == "call.ended"]
    assert len(ended) == 1 and ended[0]["reconciled"] is True
    assert not any(b.get("type") == "call.started" for b in after), "what the leader told is not told again"
    assert outbox.load_tracking().channels == []
    outbox.close()


async def test_a_follower_that_leads_stores_again_and_stops_at_once_when_it_follows(tmp_path: Path) -> None:
    modes = Modes(newchannel=2, hangup=2)
    with Outbox(tmp_path / "outbox.db", max_rows=1000) as outbox:
        pipeline = EventPipeline(CallTracker(modes), outbox, extended=False)
        pipeline.follow()
        await feed(pipeline, events(STREAM))
        assert outbox.list_events(limit=100) == []
        pipeline.lead(outbox.load_tracking())
        stream = events(STREAM)
        for event in stream:
            pipeline.on_event(event)
        pipeline.follow()  # before the read's flush: the batch goes with the lead
        await asyncio.sleep(0)
        assert outbox.list_events(limit=100) == []
        pipeline.lead(outbox.load_tracking())
        await feed(pipeline, stream)
        assert [json.loads(e.body)["event"] for e in outbox.list_events(limit=100)] == ["Newchannel"] * 3 + [
            "Hangup"
        ] * 3


async def test_a_node_follows_until_it_holds_the_lock_then_takes_over_and_follows_again_when_stopped(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url, max_rows=1000, node="a")
    try:
        pipeline = EventPipeline(CallTracker(Modes(newchannel=2, hangup=2)), store)
        resync = Resynchronizer(pipeline, FakeAmi(), interval_s=60, grace_s=30)
        node = Node(Leadership(pg_url, node="a", retry_s=0.1), pipeline, [resync], store)
        gauge = LeaderGauge(node)
        assert (pipeline.storing, node.role(), gauge_value(gauge)) == (False, "follower", 0.0)
        duty_ran = asyncio.Event()

        async def duty() -> None:
            duty_ran.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(node.run({"duty": duty}))
        await until(lambda: duty_ran.is_set())
        assert (node.takeovers, resync.resyncs, pipeline.storing) == (1, 1, True), "resynchronised before its duties"
        assert (node.role(), gauge_value(gauge), store.fence_pid) == ("leader", 1.0, node.leadership.pid)
        task.cancel()
        await asyncio.wait([task])
        assert (pipeline.storing, node.role(), store.fence_pid) == (False, "follower", None)
        assert gauge_value(LeaderGauge(None)) == 1.0, "one node on SQLite always leads"
    finally:
        store.close()


async def test_a_leader_that_stops_stores_the_reads_still_waiting_in_its_batch_window(pg_url: str) -> None:
    store = PostgresStore(pg_url, max_rows=1000, node="a")
    try:
        pipeline = EventPipeline(CallTracker(Modes(newchannel=2, hangup=2)), store, batch_window_s=3600.0)
        node = Node(Leadership(pg_url, node="a", retry_s=0.1), pipeline, [], store)
        task = asyncio.create_task(node.run({}))
        await until(lambda: pipeline.storing and node.takeovers == 1)
        stream = events(STREAM)
        hangup = next(i for i, event in enumerate(stream) if event.name == "Hangup")
        await feed(pipeline, stream[:hangup])  # the first read after a quiet spell: stored at once
        await feed(pipeline, stream[hangup:])  # within the window: waits for the next transaction
        task.cancel()  # the service stops: the lead goes, and the window with it unless stored first
        await asyncio.wait([task])
        assert not pipeline.storing
        stored = [json.loads(event.body)["event"] for event in store.event_log(limit=100)]
        assert stored == ["Newchannel"] * 3 + ["Hangup"] * 3
    finally:
        store.close()


def gauge_value(gauge: LeaderGauge) -> float:
    [metric] = list(gauge.collect())
    assert metric.name == "salara_node_leader"
    return float(metric.samples[0].value)
