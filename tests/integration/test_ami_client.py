"""The asyncio AMI client against the real test Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Literal

import pytest

from salara.ami.client import AMIClient, AMISettings
from salara.ami.messages import Event
from salara.errors import AMIActionError, AMIUnavailable, LocalProtocolError
from testpbx import pbx
from tests.amiwatch import AMIRecorder

pytestmark = pytest.mark.usefixtures("asterisk")


def settings(port: int = pbx.AMI_PORT, **overrides: object) -> AMISettings:
    base = AMISettings(
        host=pbx.AMI_HOST,
        port=port,
        username=pbx.AMI_USER,
        secret=pbx.AMI_SECRET,
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(client: AMIClient, wait: bool = True) -> AsyncIterator[AMIClient]:
    task = asyncio.create_task(client.run())
    try:
        if wait:
            await client.wait_ready(10)
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("auth", ["md5", "plain"])
async def test_login_and_correlated_concurrent_actions(auth: Literal["md5", "plain"]) -> None:
    async with running(AMIClient(settings(auth=auth))) as client:
        extens = ["9001", "9002", "9003", "8001", "7777"] * 10
        answers = await asyncio.gather(
            *(client.action("ExtensionState", {"Exten": e, "Context": "phones"}) for e in extens)
        )
        assert [a["Exten"] for a in answers] == extens
        assert {a["Exten"]: a["Status"] for a in answers}["7777"] == "-1"


async def test_wrong_secret_is_not_ready_and_says_why() -> None:
    client = AMIClient(settings(secret="wrong"))
    async with running(client, wait=False):
        with pytest.raises(TimeoutError):
            await client.wait_ready(2.5)
        assert not client.ready
        assert client.last_error is not None and "Authentication failed" in client.last_error


async def test_list_action_collects_items_until_complete() -> None:
    async with running(AMIClient(settings())) as client:
        response = await client.action("PJSIPShowEndpoints")
        names = sorted(e["ObjectName"] for e in response.items)
        assert names == ["8001", "8002", "8003"]
        assert response.events[-1]["ListItems"] == "3"


async def test_command_output_and_errors() -> None:
    async with running(AMIClient(settings())) as client:
        output = await client.command("core show hints")
        assert any(line.startswith("9001@sim") for line in output)
        with pytest.raises(AMIActionError, match="No such command"):
            await client.command("no such command here")


async def test_originate_outcome_arrives_as_event() -> None:
    async with running(AMIClient(settings())) as client:
        response, outcome = await client.originate(
            {"Channel": "Local/9001@sim", "Application": "Wait", "Data": "1"}, timeout_s=10
        )
        assert response.ok
        event = await outcome
        assert isinstance(event, Event)
        assert event["Response"] == "Success" and event.action_id == response.action_id
        _, failed = await client.originate(
            {"Channel": "PJSIP/8002", "Context": "sim", "Exten": "9001", "Priority": "1"}, timeout_s=10
        )
        assert (await failed)["Response"] == "Failure"


async def test_events_reach_listeners() -> None:
    seen: list[str] = []
    client = AMIClient(settings())
    client.add_event_listener(lambda event: seen.append(event.name))
    async with running(client):
        await client.action("Setvar", {"Variable": "DEVICE_STATE(Custom:9003)", "Value": "INUSE"})
        await client.action("Setvar", {"Variable": "DEVICE_STATE(Custom:9003)", "Value": "NOT_INUSE"})
        for _ in range(50):
            if "DeviceStateChange" in seen:
                break
            await asyncio.sleep(0.05)
    assert "DeviceStateChange" in seen


async def test_injection_is_refused_before_anything_is_sent(ami_recorder: AMIRecorder) -> None:
    async with running(AMIClient(settings(port=ami_recorder.port))) as client:
        before = len(ami_recorder.actions())
        with pytest.raises(LocalProtocolError):
            await client.action("ExtensionState", {"Exten": "9001\r\nAction: Originate", "Context": "x"})
        await client.action("Ping")
        assert ami_recorder.actions()[before:] == ["Ping"]


async def test_dropped_link_fails_in_flight_actions_and_heals(ami_recorder: AMIRecorder) -> None:
    states: list[bool] = []
    client = AMIClient(settings(port=ami_recorder.port))
    client.add_state_listener(states.append)
    async with running(client):
        # A synchronous Originate to a channel that rings unanswered stays in flight.
        pending = asyncio.create_task(
            client.action(
                "Originate",
                {"Channel": "Local/9998@sim", "Application": "Wait", "Data": "1", "Timeout": "10000"},
                timeout_s=20,
            )
        )
        await asyncio.sleep(0.3)
        ami_recorder.cut()
        with pytest.raises(AMIUnavailable):
            await pending
        await client.wait_ready(5)
        assert (await client.action("Ping"))["Ping"] == "Pong"
    assert states[:3] == [True, False, True]
    assert ami_recorder.actions().count("Originate") == 1, "the Originate must not be replayed"
    pbx.hangup_all()


async def test_not_ready_raises_unavailable_at_once() -> None:
    client = AMIClient(settings(port=1))
    with pytest.raises(AMIUnavailable):
        await client.action("Ping")
