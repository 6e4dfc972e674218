"""The event pipeline on recorded Asterisk 22 events: outbox, live listeners, resync, restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from salara.ami.messages import Event, Response
from salara.calls.events import CrmEvent
from salara.calls.tracking import CallTracker, TrackingChanges
from salara.config import Event as Modes
from salara.events.hub import EventHub
from salara.events.pipeline import EventPipeline
from salara.events.resync import Resynchronizer
from salara.store.sqlite import Outbox
from tests.unit.test_calls import DIAL_CALL, DIAL_CHANNELS, events

MODES = Modes(newchannel=1, hangup=1, newexten=0, agentcon=0)


class FakeAmi:
    """Answers ``CoreShowChannels`` with ``channels``; ``meanwhile`` runs while the list is on its way."""

    ready = True

    def __init__(self, channels: Sequence[Event] = (), meanwhile: Callable[[], None] | None = None) -> None:
        self.channels = list(channels)
        self.meanwhile = meanwhile

    async def action(self, name: str, *args: Any, **kwargs: Any) -> Response:
        assert name == "CoreShowChannels"
        await asyncio.sleep(0)
        if self.meanwhile is not None:
            self.meanwhile()
        complete = Event("CoreShowChannelsComplete", (("EventList", "Complete"),))
        return Response("Success", (("EventList", "start"),), (*self.channels, complete))


def listed(uniqueid: str, linkedid: str, channel: str, state: int) -> Event:
    return Event(
        "CoreShowChannel",
        (("Channel", channel), ("ChannelState", str(state)), ("Uniqueid", uniqueid), ("Linkedid", linkedid)),
    )


async def sweep(pipeline: EventPipeline, ami: FakeAmi, grace_s: float) -> list[str]:
    """One resynchronisation of the pipeline's call model against ``ami``."""
    return await Resynchronizer(pipeline, ami, interval_s=60, grace_s=grace_s).resync()


def bodies(outbox: Outbox) -> list[dict[str, Any]]:
    return [json.loads(e.body) for e in outbox.list_events(limit=1000)]


async def feed(pipeline: EventPipeline, stream: Sequence[Event]) -> None:
    """Feed events as one AMI read, then let the flush after the read run."""
    for event in stream:
        pipeline.on_event(event)
    await asyncio.sleep(0)


def until_first_hangup(name: str) -> list[Event]:
    stream = events(name)
    return stream[: next(i for i, e in enumerate(stream) if e.name == "Hangup")]


async def test_live_listeners_hear_of_an_event_once_it_is_stored(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_rows=1000)
    heard: list[tuple[str, bool]] = []

    def listener(crm_event: CrmEvent, event_id: str, body: bytes) -> None:
        stored = {e.id for e in outbox.list_events()}
        heard.append((crm_event.name, event_id in stored))

    tracker = CallTracker(MODES)
    pipeline = EventPipeline(tracker, outbox, extended=False, live_listeners=[listener])
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    await feed(pipeline, events("originate_dial_pjsip.txt"))
    assert heard == [("Newchannel", True)] * 3 + [("Hangup", True)] * 3
    outbox.close()


async def test_missed_hangups_of_a_tracked_call_reach_the_outbox(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_rows=1000)
    tracker = CallTracker(MODES)
    pipeline = EventPipeline(tracker, outbox, extended=True)
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    await feed(pipeline, until_first_hangup("originate_dial_pjsip.txt"))
    # The AMI link dropped while the call ended; after the login Asterisk lists none of it.
    assert await sweep(pipeline, FakeAmi(), grace_s=30) == [DIAL_CALL]
    got = bodies(outbox)
    assert [b["event"] for b in got] == ["Newchannel"] * 3 + ["Hangup"] * 3
    hangups = got[3:]
    assert [b["chan"] for b in hangups] == DIAL_CHANNELS
    extended_keys = [
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
    ]
    for body in hangups:
        assert list(body) == [*extended_keys, "synthesized"]
        assert body["synthesized"] is True and body["linkedid"] == DIAL_CALL
        assert (body["caller"], body["exten"], body["state"]) == ("5550001", "8001", "UP")
    assert all("synthesized" not in b for b in got[:3])
    assert tracker.calls == {}
    assert outbox.load_tracking() == TrackingChanges()
    outbox.close()


async def test_a_synthesized_hangup_has_the_compat_payload(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_rows=1000)
    tracker = CallTracker(MODES)
    pipeline = EventPipeline(tracker, outbox, extended=False)
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    await feed(pipeline, until_first_hangup("originate_dial_pjsip.txt"))
    await sweep(pipeline, FakeAmi(), grace_s=30)
    assert bodies(outbox)[3:] == [
        {"event": "Hangup", "chan": chan, "caller": "5550001", "exten": "8001", "state": "UP"} for chan in DIAL_CHANNELS
    ]
    outbox.close()


async def test_mode_0_stores_no_synthesized_hangup(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_rows=1000)
    tracker = CallTracker(Modes(newchannel=1, hangup=0))
    pipeline = EventPipeline(tracker, outbox, extended=False)
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    await feed(pipeline, until_first_hangup("originate_dial_pjsip.txt"))
    assert await sweep(pipeline, FakeAmi(), grace_s=30) == [DIAL_CALL]
    assert [b["event"] for b in bodies(outbox)] == ["Newchannel"] * 3
    outbox.close()


async def test_events_that_arrive_while_the_list_is_on_its_way_win(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_rows=1000)
    tracker = CallTracker(MODES)
    pipeline = EventPipeline(tracker, outbox, extended=False)
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    stream = events("originate_dial_pjsip.txt")
    third = [i for i, e in enumerate(stream) if e.name == "Newchannel"][2]
    await feed(pipeline, stream[:third])  # the Local pair
    first_hangup = next(e for e in stream if e.name == "Hangup")
    # Asterisk lists the Local pair; in the read that brings the list's end, the
    # phone's channel is born and ;1 hangs up.

    def meanwhile() -> None:
        pipeline.on_event(stream[third])
        pipeline.on_event(first_hangup)

    ami = FakeAmi(
        [
            listed("1795962280.24", DIAL_CALL, DIAL_CHANNELS[0], 6),
            listed("1795962280.25", DIAL_CALL, DIAL_CHANNELS[1], 6),
        ],
        meanwhile,
    )
    assert await sweep(pipeline, ami, grace_s=30) == []
    assert tracker.calls[DIAL_CALL].channels == {"1795962280.25", "1795962280.26"}
    assert [b["event"] for b in bodies(outbox)] == ["Newchannel"] * 3 + ["Hangup"], "no synthesized Hangup"
    # The rest of the call: its last Hangup ends tracking, as usual.
    await feed(pipeline, [e for e in stream if e.name == "Hangup" and e is not first_hangup])
    assert tracker.calls == {}
    assert [b["chan"] for b in bodies(outbox)[3:]] == DIAL_CHANNELS
    outbox.close()


async def test_tracked_calls_survive_a_restart_and_get_their_missed_hangups(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, max_rows=1000)
    tracker = CallTracker(MODES)
    pipeline = EventPipeline(tracker, outbox, extended=True)
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    await asyncio.sleep(0)  # tracked through the API: stored at once, before any AMI event
    assert [row[0] for row in outbox.load_tracking().calls] == [DIAL_CALL]
    await feed(pipeline, until_first_hangup("originate_dial_pjsip.txt"))
    outbox.close()  # salara is killed; the call ends while it is away

    outbox = Outbox(path, max_rows=1000)
    tracker = CallTracker(MODES)
    pipeline = EventPipeline(tracker, outbox, extended=True)
    pipeline.restore(outbox.load_tracking())
    assert set(tracker.calls) == {DIAL_CALL}
    assert (tracker.calls[DIAL_CALL].caller, tracker.calls[DIAL_CALL].exten) == ("5550001", "8001")
    assert await sweep(pipeline, FakeAmi(), grace_s=30) == [DIAL_CALL]
    hangups = [b for b in bodies(outbox) if b["event"] == "Hangup"]
    assert sorted(b["chan"] for b in hangups) == DIAL_CHANNELS
    assert all(b["synthesized"] and b["state"] == "UP" and b["caller"] == "5550001" for b in hangups)
    assert outbox.load_tracking() == TrackingChanges()
    outbox.close()


async def test_a_restored_call_still_dialling_is_kept_within_its_grace(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_rows=1000) as outbox:
        pipeline = EventPipeline(CallTracker(MODES), outbox, extended=False)
        pipeline.tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=time.time(), mono=time.monotonic())
        pipeline.flush()
    with Outbox(path, max_rows=1000) as outbox:
        tracker = CallTracker(MODES)
        pipeline = EventPipeline(tracker, outbox, extended=False)
        pipeline.restore(outbox.load_tracking())
        assert await sweep(pipeline, FakeAmi(), grace_s=30) == []
        assert DIAL_CALL in tracker.calls
        assert await sweep(pipeline, FakeAmi(), grace_s=-1) == [DIAL_CALL]


async def test_untracked_channels_in_mode_2_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    modes = Modes(newchannel=2, hangup=2)
    with Outbox(path, max_rows=1000) as outbox:
        pipeline = EventPipeline(CallTracker(modes), outbox, extended=False)
        await feed(pipeline, until_first_hangup("inbound_ua_to_queue.txt"))
    with Outbox(path, max_rows=1000) as outbox:
        tracker = CallTracker(modes)
        pipeline = EventPipeline(tracker, outbox, extended=False)
        pipeline.restore(outbox.load_tracking())
        await sweep(pipeline, FakeAmi(), grace_s=30)
        hangups = [b for b in bodies(outbox) if b["event"] == "Hangup"]
        assert sorted(b["chan"] for b in hangups) == [
            "Local/agent1@queue-agents-00000000;1",
            "Local/agent1@queue-agents-00000000;2",
            "PJSIP/8001-00000000",
        ]
        assert outbox.load_tracking() == TrackingChanges()


async def test_the_live_streams_data_is_the_extended_webhook_body_of_the_same_event(tmp_path: Path) -> None:
    for extended in (True, False):
        with Outbox(tmp_path / f"outbox-{extended}.db", max_rows=1000) as outbox:
            hub = EventHub()
            subscription = hub.subscribe()
            tracker = CallTracker(MODES)
            pipeline = EventPipeline(tracker, outbox, extended=extended, live_listeners=[hub.publish])
            tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
            await feed(pipeline, until_first_hangup("originate_dial_pjsip.txt"))
            await sweep(pipeline, FakeAmi(), grace_s=30)  # synthesized Hangups too
            stored = outbox.list_events(limit=1000)
            live = [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]
            assert len(live) == len(stored) == 6
            for event, message in zip(stored, live, strict=True):
                assert event is not None and message is not None
                data = json.loads(message.message.split(b"\ndata: ", 1)[1])
                webhook = json.loads(event.body)
                assert data["id"] == event.id and data["timestamp"].endswith("Z")
                if extended:
                    assert data == webhook
                else:  # the compat body is its subset
                    assert {key: data[key] for key in webhook} == webhook
                    assert set(data) - set(webhook) >= {"id", "uniqueid", "linkedid", "tracked", "timestamp"}
            assert sum(1 for m in live if b'"synthesized":true' in m.message) == 3
