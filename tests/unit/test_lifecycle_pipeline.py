"""Lifecycle events through the event pipeline: the same transaction, ids and order as the compat events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from salara.ami.messages import Event
from salara.calls.events import CrmEvent
from salara.calls.lifecycle import CallLifecycle, LifecycleEvent
from salara.calls.tracking import CallTracker, TrackingChanges
from salara.config import Event as Modes
from salara.events.hub import EVENT_TYPES, EventHub
from salara.events.pipeline import EventPipeline
from salara.store.records import NewEvent
from salara.store.sqlite import Outbox
from salara.utc import utc_timestamp
from tests.unit.test_calls import DIAL_CALL, events
from tests.unit.test_event_pipeline import FakeAmi, bodies, sweep, until_first_hangup

MODES = Modes(newchannel=1, hangup=1, newexten=0, agentcon=0, payload="extended", lifecycle=True, watch_makecall=True)
DIRECT_CALL = "1795962284.27"


class Recorder:
    """A store that keeps each ``add`` (one transaction) as it came."""

    def __init__(self) -> None:
        self.transactions: list[list[tuple[str, bytes]]] = []
        self.ids: list[list[str]] = []

    def add(
        self,
        items: Sequence[NewEvent],
        *,
        ids: Sequence[str] | None = None,
        tracking: TrackingChanges | None = None,
    ) -> list[str]:
        if items:
            # As the default endpoint gets each: (call key, body), the compat body where it takes that one.
            self.transactions.append([(e.call_key, e.compat if e.compat_endpoints else e.body) for e in items])
            self.ids.append(list(ids or []))
        return list(ids or [])


def pipeline_with(store: Any, modes: Modes = MODES, *, webhook: bool = True, **kw: Any) -> EventPipeline:
    tracker = CallTracker(modes)
    lifecycle = CallLifecycle(tracker.registry)
    return EventPipeline(
        tracker, store, extended=modes.payload == "extended", lifecycle=lifecycle, lifecycle_webhook=webhook, **kw
    )


def placed(pipeline: EventPipeline, call_id: str, client_state: str | None = "lead-4711") -> None:
    """Announce and track a call as call control does when it places one."""
    pipeline.tracker.registry.originated(call_id, "8001", "9002", "phones", 100.0, client_state=client_state)
    pipeline.tracker.track(call_id, "8001", "9002", "makecall", 100.0, 100.0)


async def feed(pipeline: EventPipeline, stream: Sequence[Event]) -> None:
    """Feed events as one AMI read (an ``OriginateResponse`` also as call control takes it), then let it flush."""
    for event in stream:
        if event.name == "OriginateResponse":
            pipeline.tracker.registry.originate_result(event.get("Uniqueid") or "", event.get("Response"), 4, 1.0, 1.0)
        pipeline.on_event(event)
    await asyncio.sleep(0)


async def test_lifecycle_events_share_the_transaction_ids_and_call_order_of_the_compat_events() -> None:
    store = Recorder()
    pipeline = pipeline_with(store)
    placed(pipeline, DIRECT_CALL)
    await feed(pipeline, events("originate_pjsip_direct.txt"))
    [batch] = [t for t in store.transactions if t]  # one AMI read: one transaction
    [ids] = store.ids
    keys = {key for key, _ in batch}
    assert keys == {DIRECT_CALL}, "one call key: ordered with the compat events of the call"
    got = [json.loads(body) for _, body in batch]
    names = [b.get("event") or b.get("type") for b in got]
    assert names == [
        "Newchannel",
        "call.started",
        "call.ringing",
        "call.answered",
        "call.answered",
        "Hangup",
        "call.ended",
    ]
    for body, event_id in zip(got, ids, strict=True):
        assert body["id"] == event_id
    lifecycle = [b for b in got if "type" in b]
    for body in lifecycle:
        assert list(body)[:3] == ["type", "id", "call_id"], "flat: type and id first"
        assert body["client_state"] == "lead-4711"
        assert "event" not in body and "chan" not in body
    assert lifecycle[-1]["result"] == "answered"
    # The compat events are exactly what they were.
    assert got[0]["event"] == "Newchannel" and set(got[0]) == {
        "event",
        "chan",
        "caller",
        "exten",
        "state",
        "uniqueid",
        "linkedid",
        "pbx",
        "tracked",
        "timestamp",
        "id",
    }


async def test_without_the_option_lifecycle_events_reach_the_live_stream_only(tmp_path: Path) -> None:
    for extended, webhook in ((True, False), (False, True), (False, False)):
        modes = Modes(newchannel=1, hangup=1, payload="extended" if extended else "compat", watch_makecall=True)
        with Outbox(tmp_path / f"outbox-{extended}-{webhook}.db", max_rows=1000) as outbox:
            hub = EventHub()
            subscription = hub.subscribe()
            pipeline = pipeline_with(outbox, modes, webhook=webhook, live_listeners=[hub.publish])
            placed(pipeline, DIRECT_CALL)
            await feed(pipeline, events("originate_pjsip_direct.txt"))
            assert [b["event"] for b in bodies(outbox)] == ["Newchannel", "Hangup"], "never with a compat payload"
            live = [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]
            assert [m.name for m in live if m is not None] == [
                "Newchannel",
                "call.started",
                "call.ringing",
                "call.answered",
                "call.answered",
                "Hangup",
                "call.ended",
            ]


async def test_live_listeners_get_the_lifecycle_body_once_it_is_stored(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", max_rows=1000) as outbox:
        heard: list[tuple[str, bool, dict[str, Any]]] = []

        def listener(event: CrmEvent | LifecycleEvent, event_id: str, body: bytes) -> None:
            stored = {e.id for e in outbox.list_events()}
            heard.append((event.name, event_id in stored, json.loads(body)))

        pipeline = pipeline_with(outbox, live_listeners=[listener])
        placed(pipeline, DIRECT_CALL)
        await feed(pipeline, events("originate_pjsip_direct.txt"))
        assert all(stored for _, stored, _ in heard)
        webhook = {b["id"]: b for b in bodies(outbox)}
        for _, _, data in heard:
            assert webhook[data["id"]] == data, "the stream's data is the webhook body"


async def test_the_times_are_asterisks_event_timestamps_when_it_sends_them() -> None:
    store = Recorder()
    pipeline = pipeline_with(store, clock=lambda: 5000.0)
    stream = [
        Event(e.name, (*e.headers, ("Timestamp", f"{1795962284 + i}.250000")))
        for i, e in enumerate(events("originate_pjsip_direct.txt"))
    ]
    placed(pipeline, DIRECT_CALL)
    await feed(pipeline, stream)
    got = [json.loads(body) for t in store.transactions for _, body in t]
    ringing = next(b for b in got if b.get("type") == "call.ringing")
    index = next(i for i, e in enumerate(stream) if e.name == "Newstate" and e.get("ChannelState") == "5")
    assert ringing["timestamp"] == utc_timestamp(1795962284.25 + index)
    hangup = next(b for b in got if b.get("event") == "Hangup")
    ended = next(b for b in got if b.get("type") == "call.ended")
    assert ended["ended_at"] == ended["timestamp"] == hangup["timestamp"], "one time for one event"


async def test_an_originate_response_without_a_channel_ends_the_call_in_the_next_batch() -> None:
    store = Recorder()
    pipeline = pipeline_with(store)
    pipeline.tracker.registry.originated("salara-x", "8002", "9001", "phones", 100.0, client_state="c")
    await asyncio.sleep(0)
    assert store.transactions == []
    # The OriginateResponse reaches call control, not the pipeline: the registry tells it.
    pipeline.tracker.registry.originate_result("salara-x", "Failure", 0, 101.0, 101.0)
    await asyncio.sleep(0)
    [batch] = store.transactions
    assert [json.loads(body)["type"] for _, body in batch] == ["call.started", "call.ended"]
    assert json.loads(batch[1][1])["result"] == "failed"


async def test_a_call_that_ended_while_away_gets_its_call_ended_after_the_synthesized_hangups(
    tmp_path: Path,
) -> None:
    with Outbox(tmp_path / "outbox.db", max_rows=1000) as outbox:
        pipeline = pipeline_with(outbox)
        placed(pipeline, DIAL_CALL, client_state="kept")
        await feed(pipeline, until_first_hangup("originate_dial_pjsip.txt"))
        assert await sweep(pipeline, FakeAmi(), grace_s=30) == [DIAL_CALL]
        got = bodies(outbox)
        tail = [b.get("event") or b.get("type") for b in got][-4:]
        assert tail == ["Hangup", "Hangup", "Hangup", "call.ended"]
        ended = got[-1]
        assert (ended["reconciled"], ended["approximate"], ended["client_state"]) == (True, True, "kept")
        assert [b.get("type") for b in got].count("call.ended") == 1
        assert await sweep(pipeline, FakeAmi(), grace_s=30) == []
        assert [b.get("type") for b in bodies(outbox)].count("call.ended") == 1


async def test_after_a_restart_a_call_gets_one_call_ended_and_nothing_it_had_told(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_rows=1000) as outbox:
        pipeline = pipeline_with(outbox)
        placed(pipeline, DIAL_CALL)
        await feed(pipeline, until_first_hangup("originate_dial_pjsip.txt"))
        told = [b.get("type") for b in bodies(outbox) if "type" in b]
        assert told[0] == "call.started" and "call.ended" not in told
    with Outbox(path, max_rows=1000) as outbox:  # salara was killed; the call ended while it was away
        pipeline = pipeline_with(outbox)
        pipeline.restore(outbox.load_tracking())
        pipeline.flush()
        assert [b.get("type") for b in bodies(outbox) if "type" in b] == told, "nothing told again"
        await sweep(pipeline, FakeAmi(), grace_s=30)
        after = [b for b in bodies(outbox) if "type" in b][len(told) :]
        assert [b["type"] for b in after] == ["call.ended"]
        assert after[0]["reconciled"] is True and after[0]["direction"] == "outbound"
        assert (after[0]["from"], after[0]["to"]) == ("8001", "9002")


def test_the_live_stream_filters_lifecycle_types() -> None:
    assert EVENT_TYPES[4:] == ("call.started", "call.ringing", "call.answered", "call.transferred", "call.ended")
