"""The pipeline's batch window: reads that come close together share one store transaction (group commit)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from salara import config as config_module
from salara.ami.messages import Event
from salara.app import Services
from salara.calls.tracking import CallTracker
from salara.events.pipeline import BATCH_WINDOW_S, EventPipeline
from salara.store.sqlite import Outbox
from tests.unit.test_calls import DIAL_CALL, events
from tests.unit.test_event_pipeline import MODES
from tests.unit.test_lifecycle_pipeline import Recorder

READS = events("originate_dial_pjsip.txt")


def pipeline_with(store: Recorder, window_s: float) -> EventPipeline:
    tracker = CallTracker(MODES)
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    return EventPipeline(tracker, store, extended=True, batch_window_s=window_s)


async def read(pipeline: EventPipeline, stream: Sequence[Event]) -> None:
    """One AMI read, then the loop turns once, as after every read."""
    for event in stream:
        pipeline.on_event(event)
    await asyncio.sleep(0)


def names(transaction: list[tuple[str, bytes]]) -> list[str]:
    return [json.loads(body)["event"] for _, body in transaction]


async def test_reads_within_the_window_wait_for_one_transaction_which_a_flush_makes_at_once() -> None:
    store = Recorder()
    pipeline = pipeline_with(store, window_s=3600.0)
    hangup = next(i for i, event in enumerate(READS) if event.name == "Hangup")
    await read(pipeline, READS[:hangup])
    assert [names(t) for t in store.transactions] == [["Newchannel"] * 3]  # the first after a quiet spell: at once
    middle = (hangup + len(READS)) // 2
    await read(pipeline, READS[hangup:middle])
    await read(pipeline, READS[middle:])
    assert len(store.transactions) == 1  # within the window of the first: they wait
    pipeline.flush()  # as at shutdown
    assert [names(t) for t in store.transactions] == [["Newchannel"] * 3, ["Hangup"] * 3]
    pipeline.flush()
    await asyncio.sleep(0)
    assert len(store.transactions) == 2  # nothing twice


async def test_a_read_after_the_window_is_stored_at_once() -> None:
    store = Recorder()
    pipeline = pipeline_with(store, window_s=0.001)
    hangup = next(i for i, event in enumerate(READS) if event.name == "Hangup")
    await read(pipeline, READS[:hangup])
    await asyncio.sleep(0.05)  # a quiet spell longer than the window
    await read(pipeline, READS[hangup:])
    assert [names(t) for t in store.transactions] == [["Newchannel"] * 3, ["Hangup"] * 3]


async def test_a_pending_window_without_a_flush_is_written_when_its_time_comes() -> None:
    store = Recorder()
    pipeline = pipeline_with(store, window_s=0.01)
    hangup = next(i for i, event in enumerate(READS) if event.name == "Hangup")
    await read(pipeline, READS[:hangup])
    await read(pipeline, READS[hangup:])
    for _ in range(200):  # bounded: the window is 10 ms
        if len(store.transactions) == 2:
            break
        await asyncio.sleep(0.01)
    assert [names(t) for t in store.transactions] == [["Newchannel"] * 3, ["Hangup"] * 3]


async def test_the_service_stores_its_last_window_when_it_closes(tmp_path: Path) -> None:
    environ = {"SALARA_OUTBOX_PATH": str(tmp_path / "outbox.db"), "SALARA_EVENT_NEWCHANNEL": "2"}
    services = Services.build(config_module.load(None, environ=environ))
    assert services.pipeline.batch_window_s == BATCH_WINDOW_S > 0
    services.pipeline.batch_window_s = 3600.0  # so that the second read surely waits
    newchannels = [event for event in READS if event.name == "Newchannel"]
    await read(services.pipeline, newchannels[:1])
    await read(services.pipeline, newchannels[1:])
    await services.close()
    with Outbox(tmp_path / "outbox.db", max_rows=1000) as outbox:
        logged = outbox.event_log(limit=100)  # no endpoint: the event log has them
    stored = [json.loads(event.body)["chan"] for event in logged if event.type == "Newchannel"]
    assert stored == [event["Channel"] for event in newchannels]
