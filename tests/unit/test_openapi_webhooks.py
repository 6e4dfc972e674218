"""The webhooks of the OpenAPI document describe the bodies salara builds: recorded calls through the pipeline.

Every body the event pipeline stores for recorded Asterisk 22 calls (placed,
dialled through Local channels, queued, a Hangup salara missed), in both
payloads and with the lifecycle events (a transfer too), validates against its webhook model
(unknown fields refused), and so against ``docs/openapi.json``'s schemas.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from pydantic import BaseModel, ValidationError

from salara.ami.messages import Event
from salara.api.v1.webhooks import WEBHOOKS
from salara.calls.lifecycle import LIFECYCLE_TYPES, CallLifecycle
from salara.calls.tracking import CallTracker, TrackingChanges
from salara.config import Event as Modes
from salara.events.hub import EVENT_TYPES
from salara.events.pipeline import EventPipeline
from salara.store.records import NewEvent
from tests.unit.test_calls import DIAL_CALL, QUEUE_CALL, events
from tests.unit.test_event_pipeline import FakeAmi, sweep, until_first_hangup

DIRECT_CALL = "1795962284.27"
BODIES = {webhook.name: webhook.bodies for webhook in WEBHOOKS}


class Recorder:
    """A store that keeps every body added."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def add(
        self,
        items: Sequence[NewEvent],
        *,
        ids: Sequence[str] | None = None,
        tracking: TrackingChanges | None = None,
    ) -> list[str]:
        # What the default endpoint gets: the compat body where it takes that one.
        self.bodies += [
            e.compat if e.compat_endpoints and e.compat else e.body for e in items if e.endpoints or e.compat_endpoints
        ]
        return list(ids or [])


def model_of(body: dict[str, object], extended: bool) -> type[BaseModel]:
    name = str(body.get("event") or body.get("type"))
    models = BODIES[name]
    return models[-1] if extended or len(models) == 1 else models[0]


def pipeline_for(store: Recorder, extended: bool) -> EventPipeline:
    modes = Modes(
        newchannel=2,
        hangup=2,
        newexten=3,
        agentcon=3,
        payload="extended" if extended else "compat",
        lifecycle=extended,
        watch_makecall=True,
    )
    tracker = CallTracker(modes)
    return EventPipeline(
        tracker, store, extended=extended, lifecycle=CallLifecycle(tracker.registry), lifecycle_webhook=extended
    )


async def feed(pipeline: EventPipeline, stream: Sequence[Event]) -> None:
    for event in stream:
        if event.name == "OriginateResponse":
            pipeline.tracker.registry.originate_result(event.get("Uniqueid") or "", event.get("Response"), 4, 1.0, 1.0)
        pipeline.on_event(event)
    await asyncio.sleep(0)


def test_every_event_type_has_its_webhook_bodies() -> None:
    assert tuple(BODIES) == EVENT_TYPES
    assert all(len(BODIES[name]) == 1 for name in LIFECYCLE_TYPES)
    assert all(len(BODIES[name]) == 2 for name in EVENT_TYPES if name not in LIFECYCLE_TYPES)


@pytest.mark.parametrize("extended", [False, True], ids=["compat", "extended"])
async def test_the_bodies_of_recorded_calls_validate_against_their_webhooks(extended: bool) -> None:
    store = Recorder()
    pipeline = pipeline_for(store, extended)
    registry = pipeline.tracker.registry
    registry.originated(DIRECT_CALL, "8001", "9002", "phones", 100.0, client_state="lead-4711")
    pipeline.tracker.track(DIRECT_CALL, "8001", "9002", "makecall", 100.0, 100.0)
    direct = events("originate_pjsip_direct.txt")
    first_hangup = next(i for i, e in enumerate(direct) if e.name == "Hangup")
    await feed(pipeline, direct[:first_hangup])
    operator = next(iter(registry.calls[DIRECT_CALL].channels.values())).name
    registry.redirected(DIRECT_CALL, operator, "9001", "phones", 150.0)  # as POST .../transfer records it
    pipeline.flush()
    await feed(pipeline, direct[first_hangup:])
    pipeline.tracker.track(QUEUE_CALL, "8001", "710", "route", 100.0, 100.0)
    await feed(pipeline, events("inbound_ua_to_queue.txt"))
    pipeline.tracker.track(DIAL_CALL, "5550001", "8001", "makecall", 100.0, 100.0)
    await feed(pipeline, until_first_hangup("originate_dial_pjsip.txt"))
    await sweep(pipeline, FakeAmi(), grace_s=30)  # its Hangups were missed: synthesized
    bodies = [json.loads(body) for body in store.bodies]
    seen = {str(body.get("event") or body.get("type")) for body in bodies}
    expected = {"Newchannel", "Newexten", "Hangup", "AgentConnect"}
    if extended:
        expected |= set(LIFECYCLE_TYPES)
    assert expected <= seen
    assert any(body.get("synthesized") for body in bodies) == extended
    for body in bodies:
        model = model_of(body, extended)
        try:
            model.model_validate(body)
        except ValidationError as exc:
            raise AssertionError(f"{model.__name__} does not describe {body}: {exc}") from None


def test_a_compat_model_refuses_an_extended_body() -> None:
    (compat, extended) = BODIES["Hangup"]
    body = {"event": "Hangup", "chan": "PJSIP/8001-1", "caller": "8001", "exten": "9001", "state": "UP"}
    compat.model_validate(body)
    with pytest.raises(ValidationError):
        compat.model_validate({**body, "id": "x"})
    with pytest.raises(ValidationError):
        extended.model_validate(body)
