"""The ``route`` FastAGI handler over real sockets: requests are checked against AMI's live channels.

A FastAGI client written here plays Asterisk (or a local process forging
Asterisk): it sends a variable block and answers every command with ``200
result=1``. AMI is a stand-in whose readiness the test sets; the channel
registry is the real one, fed AMI events built here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from salara import config as config_module
from salara.agi.server import AGIServer
from salara.ami.messages import Event
from salara.calls.registry import CallRegistry
from salara.calls.tracking import CallTracker
from salara.crm.lookup import LookupAnswer
from salara.pbx import ExtensionInfo
from salara.routing.channels import LiveChannels
from salara.routing.decision import Source
from salara.routing.script import Router
from salara.routing.table import RouteTable

LOGGER = "salara.routing.script"
WAIT_S = 5.0
CHANNEL = "Local/5100@phones-0000002a;2"
UNIQUEID = "1795962339.39"
LINKEDID = "1795962339.38"


class FakeAMI:
    """Readiness only, as :class:`~salara.routing.channels.LiveChannels` uses it."""

    def __init__(self) -> None:
        self.ready = False
        self.listeners: list[Callable[[bool], None]] = []

    def add_state_listener(self, listener: Callable[[bool], None]) -> None:
        self.listeners.append(listener)

    def set_ready(self, ready: bool) -> None:
        self.ready = ready
        for listener in self.listeners:
            listener(ready)


@dataclass
class FakePBX:
    """Every extension Idle, after ``delay_s``."""

    delay_s: float = 0.0

    async def extension_state(self, exten: str, context: str) -> ExtensionInfo:
        await asyncio.sleep(self.delay_s)
        return ExtensionInfo(exten, context, None, 0, "Idle", True)


@dataclass
class FakeLookup:
    """The CRM: names ``answer`` for every caller after ``delay_s``; records who was asked about."""

    answer: str = "9002"
    delay_s: float = 0.0
    asked: list[str] = field(default_factory=list)

    async def lookup(self, caller: str) -> LookupAnswer:
        self.asked.append(caller)
        await asyncio.sleep(self.delay_s)
        return LookupAnswer(self.answer)


@dataclass
class Setup:
    router: Router
    server: AGIServer
    ami: FakeAMI
    registry: CallRegistry
    tracker: CallTracker
    crm: FakeLookup
    pbx: FakePBX
    resyncs: list[int]

    def synced(self) -> None:
        """AMI logs in and the registry is resynchronised."""
        self.ami.set_ready(True)
        self.resyncs[0] += 1

    def newchannel(self, uniqueid: str = UNIQUEID, name: str = CHANNEL, caller: str = "5552001") -> None:
        fields = {"Uniqueid": uniqueid, "Linkedid": LINKEDID, "Channel": name, "ChannelState": "4"}
        fields["CallerIDNum"] = caller
        self.registry.on_event(Event("Newchannel", tuple(fields.items())), time.time(), time.monotonic())


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    environ = {
        "SALARA_GENERAL_CURLOPT_TIMEOUT": "2",
        "SALARA_GENERAL_DEFAULT": "710",
        "SALARA_GENERAL_DEFAULT_CONTEXT": "phones",
    }
    config = config_module.load(None, environ=environ)
    ami = FakeAMI()
    pbx = FakePBX()
    registry = CallRegistry()
    resyncs = [0]
    tracker = CallTracker(config.event, registry)
    crm = FakeLookup()
    channels = LiveChannels(registry, ami, lambda: resyncs[0])
    ami.add_state_listener(channels.on_ami_state)
    router = Router(
        config,
        pbx,  # type: ignore[arg-type]
        crm,  # type: ignore[arg-type]
        tracker,
        RouteTable(None, {}),
        channels=channels,
    )
    server = AGIServer(router.handle, "127.0.0.1", 0)
    await server.start()
    yield Setup(router, server, ami, registry, tracker, crm, pbx, resyncs)
    await server.close()


def variable_block(uniqueid: str = UNIQUEID, channel: str = CHANNEL, caller: str = "5552001") -> bytes:
    lines = {
        "network": "yes",
        "network_script": "route",
        "request": "agi://127.0.0.1/route",
        "channel": channel,
        "type": "Local",
        "uniqueid": uniqueid,
        "callerid": caller,
        "calleridname": "Customer",
        "context": "phones",
        "extension": "5100",
        "priority": "1",
    }
    return "".join(f"agi_{k}: {v}\n" for k, v in lines.items()).encode() + b"\n"


async def fastagi_call(server: AGIServer, block: bytes, other_linkedid: str = "someone-else") -> list[str]:
    """Connect, send ``block``, answer every command until salara closes; returns the commands.

    ``GET FULL VARIABLE`` (``${CHANNEL(linkedid)}``) is answered with ``other_linkedid``,
    as a forging peer would.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(block)
    commands = []
    async with asyncio.timeout(WAIT_S):
        while line := await reader.readline():
            command = line.decode().rstrip("\n")
            commands.append(command)
            if command.startswith("GET FULL VARIABLE"):
                writer.write(f"200 result=1 ({other_linkedid})\n".encode())
            else:
                writer.write(b"200 result=1\n")
    writer.close()
    return commands


ROUTED = ["SET VARIABLE SALARA_ROUTE 9002", "SET VARIABLE SALARA_ROUTE_SOURCE crm", "EXEC Goto phones,9002,1"]


async def test_a_live_channel_is_routed_and_tracked_under_amis_linkedid(setup: Setup) -> None:
    setup.synced()
    setup.newchannel()
    commands = await fastagi_call(setup.server, variable_block(), other_linkedid="1700000000.1")
    assert commands == ROUTED  # the Linkedid is not asked of the peer
    assert list(setup.tracker.calls) == [LINKEDID]
    call = setup.tracker.calls[LINKEDID]
    assert (call.caller, call.exten) == ("5552001", "9002")
    assert UNIQUEID in call.channels


@pytest.mark.parametrize(
    ("block", "why"),
    [
        (variable_block(uniqueid="1795962399.99"), "'1795962399.99' is not a live channel"),
        (variable_block(channel="PJSIP/8001-00000001"), "is channel 'Local/5100@phones-0000002a;2', not"),
        (variable_block(caller="5559999"), "has caller '5552001', not '5559999'"),
    ],
    ids=["unknown-uniqueid", "other-channel-name", "other-caller"],
)
async def test_a_request_that_is_not_the_live_channel_is_not_routed(
    setup: Setup, caplog: pytest.LogCaptureFixture, block: bytes, why: str
) -> None:
    setup.synced()
    setup.newchannel()
    setup.tracker.track(LINKEDID, "5552001", "9002", "route", time.time(), time.monotonic())
    started = time.monotonic()
    commands = await fastagi_call(setup.server, block, other_linkedid=LINKEDID)
    assert commands == []  # nothing revealed, nothing set
    assert time.monotonic() - started < setup.router.channel_wait_s + 0.5
    assert setup.crm.asked == []
    call = setup.tracker.calls[LINKEDID]
    assert (call.caller, call.exten) == ("5552001", "9002")  # the tracked call is untouched
    assert setup.router.refused == 1
    (record,) = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert "FastAGI 127.0.0.1:" in record.getMessage() and why in record.getMessage()
    assert "not routed" in record.getMessage()


async def test_forged_requests_pin_no_tracking_slot(setup: Setup) -> None:
    setup.synced()
    forged = [fastagi_call(setup.server, variable_block(uniqueid=f"1800000000.{index}")) for index in range(20)]
    assert await asyncio.gather(*forged) == [[]] * 20
    assert setup.tracker.calls == {}
    assert setup.registry.channels == {}


async def test_a_channel_announced_a_little_late_is_waited_for(setup: Setup) -> None:
    setup.synced()
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, setup.newchannel)
    commands = await fastagi_call(setup.server, variable_block())
    assert commands == ROUTED
    assert list(setup.tracker.calls) == [LINKEDID]


async def test_while_ami_is_down_calls_are_routed_untracked(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    started = time.monotonic()
    commands = await fastagi_call(setup.server, variable_block(), other_linkedid=LINKEDID)
    assert time.monotonic() - started < setup.router.channel_wait_s, "no wait while AMI is down"
    assert commands == ROUTED
    assert setup.tracker.calls == {}
    assert setup.router.untracked == 1
    assert "AMI is not connected; routing without tracking" in caplog.text


async def test_before_the_resync_after_a_login_calls_are_routed_untracked(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    setup.synced()
    setup.ami.set_ready(False)
    setup.ami.set_ready(True)  # logged in again; its resync has not completed
    setup.newchannel(uniqueid="1795962300.1")  # some other channel
    commands = await fastagi_call(setup.server, variable_block())
    assert commands == ROUTED
    assert setup.tracker.calls == {}
    assert "not resynchronised since its login; routing without tracking" in caplog.text
    # Once resynchronised, the registry is trusted again.
    setup.resyncs[0] += 1
    setup.newchannel()
    assert await fastagi_call(setup.server, variable_block()) == ROUTED
    assert list(setup.tracker.calls) == [LINKEDID]


async def test_the_wait_for_amis_channel_counts_in_the_routing_deadline(setup: Setup) -> None:
    setup.crm.delay_s = 10  # the CRM never answers in time
    setup.pbx.delay_s = 10  # nor does AMI: the whole deadline is used
    setup.synced()
    wait_s = setup.router.channel_wait_s
    asyncio.get_running_loop().call_later(wait_s * 0.9, setup.newchannel)
    started = time.monotonic()
    commands = await fastagi_call(setup.server, variable_block())
    elapsed = time.monotonic() - started
    assert commands[:2] == ["SET VARIABLE SALARA_ROUTE 710", f"SET VARIABLE SALARA_ROUTE_SOURCE {Source.DEFAULT}"]
    assert setup.router.deadline_s - 0.1 < elapsed < setup.router.deadline_s + 0.2
    assert setup.crm.asked == ["5552001"]


def test_agi_limits_are_configurable() -> None:
    config = config_module.load(None, environ={})
    assert (config.agi.max_sessions, config.agi.header_timeout) == (200, 1.0)
    config = config_module.load(None, environ={"SALARA_AGI_MAX_SESSIONS": "500", "SALARA_AGI_HEADER_TIMEOUT": "0.5"})
    assert (config.agi.max_sessions, config.agi.header_timeout) == (500, 0.5)
