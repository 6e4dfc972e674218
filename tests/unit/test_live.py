"""The live event hub: fan-out, filters, bounded queues, replay, heartbeats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from salara.calls.events import CrmEvent
from salara.events.hub import DROPPED_MESSAGE, EventHub, LiveEvent, Subscription, TooManySubscribers
from salara.events.payload import extended_body


def crm_event(name: str, linkedid: str = "L1") -> CrmEvent:
    payload = {"event": name, "chan": "PJSIP/8001-00000001", "caller": "8001", "exten": "9002", "state": "UP"}
    return CrmEvent(name, payload, "U1", linkedid, True)


def parse(message: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in message.decode().splitlines():
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


async def next_message(stream: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(stream), 1)


async def test_subscribers_get_the_events_they_asked_for() -> None:
    hub = EventHub()
    everything = hub.subscribe()
    hangups = hub.subscribe(["Hangup"])
    one_call = hub.subscribe(call="L2")
    hub.publish(crm_event("Newchannel"), "id1", b"")
    hub.publish(crm_event("Hangup"), "id2", b"")
    hub.publish(crm_event("Hangup", "L2"), "id3", b"")
    assert [e.id for e in drain(everything)] == ["id1", "id2", "id3"]
    assert [e.id for e in drain(hangups)] == ["id2", "id3"]
    assert [e.id for e in drain(one_call)] == ["id3"]


def drain(subscription: Subscription) -> list[LiveEvent]:
    queue = subscription.queue
    out = []
    while not queue.empty():
        event = queue.get_nowait()
        assert event is not None
        out.append(event)
    return out


async def test_the_stream_is_server_sent_events_with_the_crm_payload() -> None:
    hub = EventHub()
    subscription = hub.subscribe()
    stream = hub.stream(subscription)
    assert (await next_message(stream)).startswith(b"retry: ")
    event = crm_event("Hangup")
    hub.publish(event, "abc", extended_body(event, "abc", "2026-11-29T14:25:01.134Z"))
    message = parse(await next_message(stream))
    assert message["id"] == "abc" and message["event"] == "Hangup"
    data = json.loads(message["data"])
    assert data["event"] == "Hangup" and data["chan"] == "PJSIP/8001-00000001"
    assert data["id"] == "abc" and data["linkedid"] == "L1" and data["uniqueid"] == "U1" and data["tracked"] is True
    assert data["timestamp"].endswith("Z")
    await stream.aclose()
    assert not hub.subscribers


async def test_a_slow_subscriber_is_dropped_and_never_blocks_the_publisher() -> None:
    hub = EventHub(queue_size=3)
    slow = hub.subscribe()
    fast = hub.subscribe()
    for index in range(3):
        hub.publish(crm_event("Newexten"), f"id{index}", b"")
    drain(fast)
    hub.publish(crm_event("Hangup"), "id3", b"")  # slow's queue is full: it is dropped
    assert slow.dropped and slow not in hub.subscribers
    assert fast in hub.subscribers and [e.id for e in drain(fast)] == ["id3"]
    stream = hub.stream(slow)
    await next_message(stream)  # retry hint
    assert await next_message(stream) == DROPPED_MESSAGE
    with pytest.raises(StopAsyncIteration):
        await next_message(stream)
    assert hub.dropped_subscribers == 1


async def test_subscribers_are_bounded() -> None:
    hub = EventHub(max_subscribers=2)
    first = hub.subscribe()
    hub.subscribe()
    with pytest.raises(TooManySubscribers):
        hub.subscribe()
    hub.unsubscribe(first)
    hub.subscribe()


async def test_last_event_id_replays_what_was_missed() -> None:
    hub = EventHub(replay_size=10)
    for index in range(5):
        hub.publish(crm_event("Hangup" if index % 2 else "Newchannel"), f"id{index}", b"")
    again = hub.subscribe(["Hangup"], last_event_id="id1")
    assert [e.id for e in drain(again)] == ["id3"]
    unknown = hub.subscribe(last_event_id="nosuch")
    assert drain(unknown) == []


async def test_heartbeats_keep_an_idle_stream_alive() -> None:
    hub = EventHub(heartbeat_s=0.01)
    stream = hub.stream(hub.subscribe())
    await next_message(stream)
    assert await next_message(stream) == b": heartbeat\n\n"
    await stream.aclose()


async def test_one_owner_cannot_take_every_stream() -> None:
    hub = EventHub(max_subscribers=6, max_subscribers_per_owner=2)
    mine = [hub.subscribe(owner="crm") for _ in range(2)]
    with pytest.raises(TooManySubscribers, match="this client"):
        hub.subscribe(owner="crm")
    others = [hub.subscribe(owner="dashboard"), hub.subscribe(owner="monitor")]  # others still get theirs
    hub.unsubscribe(mine[0])
    hub.subscribe(owner="crm")
    assert len(hub.subscribers) == 4 and all(s.owner == "dashboard" or s.owner != "crm" for s in others)


async def test_a_stalled_stream_counts_as_dropped() -> None:
    hub = EventHub()
    subscription = hub.subscribe(owner="crm")
    hub.stalled(subscription)
    assert subscription not in hub.subscribers and hub.dropped_subscribers == 1
    hub.stalled(subscription)  # the stream's end says so again: counted once
    assert hub.dropped_subscribers == 1
