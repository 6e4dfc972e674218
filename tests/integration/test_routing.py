"""Incoming-call routing over FastAGI on the real test Asterisk (SPEC §3).

Calls enter the routing extension 5100@phones (``AGI(agi://${SALARA_AGI}/route)``)
from a Local channel with the caller number under test; where they end up is
read from AMI events.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testpbx import pbx
from tests.amiwatch import EventWatch
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess
from tests.crm import FakeCrm

AGI_WAIT_S = 5


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm(routes={"5552001": "9002", "5552002": 9003, "5552003": "8002"}).start()
    yield server
    server.stop()


def config_text(crm: FakeCrm, *, get_style: bool = True, timeout_s: float = 2, routes: str = "") -> str:
    text = EXAMPLE_CONFIG.read_text()
    url = f"{crm.url}/lookup?phone=" if get_style else f"{crm.url}/lookup"
    text = text.replace(
        "dest_url=http://127.0.0.1:3000/call_center/incoming_call/check_is_org_only?phone=", f"dest_url={url}"
    )
    text = text.replace("curlopt_timeout=3", f"curlopt_timeout={timeout_s}")
    return text.replace("5551001:8002\n5551002:9002\n", routes)


def route_here(salara: SalaraProcess) -> None:
    """Point the routing extension's AGI at this salara (a dialplan global)."""
    agi = salara.env["SALARA_AGI_LISTEN"]
    assert "Success" in pbx.ami_command("Action: Setvar", "Variable: SALARA_AGI", f"Value: {agi}")


def incoming_call(caller: str) -> None:
    reply = pbx.ami_command(
        "Action: Originate",
        "Channel: Local/5100@phones",
        f'CallerID: "Customer" <{caller}>',
        "Application: Wait",
        "Data: 15",
        "Async: true",
    )
    assert "Success" in reply


def routed_to(events: EventWatch, exten: str, timeout_s: float = 10) -> dict[str, str]:
    """The first dialplan step of the routed call at ``exten`` (after the AGI)."""
    return events.wait_for(
        lambda e: (
            e.get("Event") == "Newexten"
            and e.get("Channel", "").startswith("Local/5100@phones-")
            and e.get("Exten") == exten
            and e.get("Priority") == "1"
        ),
        timeout_s,
    )


@pytest.fixture(autouse=True)
def clean_channels(asterisk: None) -> Iterator[None]:
    yield
    pbx.hangup_all()


@pytest.mark.parametrize("get_style", [True, False], ids=["GET", "POST"])
def test_caller_known_to_the_crm_reaches_its_manager(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch, get_style: bool
) -> None:
    salara = salara_factory(config_text(crm, get_style=get_style))
    route_here(salara)
    incoming_call("5552001")
    step = routed_to(ami_events, "9002")
    assert step["Application"] == "Answer"
    lookup = crm.lookups()[-1]
    if get_style:
        assert (lookup.method, lookup.path) == ("GET", "/lookup?phone=5552001")
    else:
        assert lookup.method == "POST" and lookup.json() == {"phone": "5552001"}
    # An integer key_word works the same.
    incoming_call("5552002")
    routed_to(ami_events, "9003")
    assert "via crm" in salara.log()


def test_crm_slower_than_the_deadline_routes_by_the_table(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    crm.delay_s = 4
    salara = salara_factory(config_text(crm, timeout_s=1, routes="5552009:9003\n"))
    route_here(salara)
    incoming_call("5552009")
    routed_to(ami_events, "9003", timeout_s=3.5)
    lookups = crm.lookups()
    assert lookups, "the CRM was asked"
    assert lookups[0].answered_at is None, "routed only after the CRM answered"
    assert "via table" in salara.log()


def test_crm_down_without_table_entry_goes_to_the_default_queue(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    salara = salara_factory(config_text(crm))
    crm.stop()  # connection refused
    route_here(salara)
    incoming_call("5552999")
    routed_to(ami_events, "710")
    agent = ami_events.wait_for(lambda e: e.get("Event") == "AgentConnect" and e.get("Queue") == "710")
    assert agent["Interface"].startswith("Local/agent1@queue-agents")


def test_unavailable_extension_named_by_the_crm_falls_back(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    # 5552003 -> 8002 per the CRM, but 8002 never registers: Unavailable.
    salara = salara_factory(config_text(crm, routes="5552003:9001\n"))
    route_here(salara)
    incoming_call("5552003")
    routed_to(ami_events, "9001")
    assert not [e for e in ami_events.snapshot() if e.get("Event") == "Newexten" and e.get("Exten") == "8002"]
    assert "via table" in salara.log()
    # The log says why the CRM's destination lost: every refused candidate with its state, then the winner.
    assert "(crm 8002 refused: state 4 Unavailable; table 9001 chosen: state " in salara.log()


def test_half_a_variable_block_does_not_disturb_other_calls(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    salara = salara_factory(config_text(crm))
    route_here(salara)
    host, _, port = salara.env["SALARA_AGI_LISTEN"].rpartition(":")
    with socket.create_connection((host, int(port))) as broken:
        broken.sendall(b"agi_network: yes\nagi_network_script: route\nagi_channel: Local/x")
        incoming_call("5552001")
        routed_to(ami_events, "9002")
    incoming_call("5552001")
    assert len([e for e in ami_events.snapshot() if e.get("Exten") == "9002" and e.get("Priority") == "1"]) >= 1


def test_route_set_changes_the_next_call_without_restart(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    crm.stop()
    salara = salara_factory(config_text(crm))
    route_here(salara)
    conf = salara.workdir / "salara.conf"
    comments = [line for line in conf.read_text().splitlines() if line.startswith(";")]
    result = subprocess.run(
        [sys.executable, "-m", "salara", "-c", str(conf), "route", "set", "5552777", "9003"],
        capture_output=True,
        text=True,
        env=salara.env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "salara", "-c", str(conf), "route", "show"],
        capture_output=True,
        text=True,
        env=salara.env,
        check=True,
    ).stdout
    assert "5552777:9003" in shown
    assert [line for line in conf.read_text().splitlines() if line.startswith(";")] == comments
    incoming_call("5552777")
    routed_to(ami_events, "9003")
    subprocess.run(
        [sys.executable, "-m", "salara", "-c", str(conf), "route", "del", "5552777"],
        env=salara.env,
        check=True,
        capture_output=True,
    )
    assert "5552777" not in Path(conf).read_text()


def test_a_routed_call_is_tracked_for_events_until_its_last_channel(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    text = config_text(crm).replace("dest_url_event=http://127.0.0.1:3000/post", f"dest_url_event={crm.url}/events")
    salara = salara_factory(text)  # mode 1 for every event type: tracked calls only
    route_here(salara)
    incoming_call("5552001")
    step = routed_to(ami_events, "9002")
    pbx.hangup_all()
    channels = {e["Channel"] for e in ami_events.snapshot() if e.get("Linkedid") == step["Linkedid"]}
    crm.wait_for(lambda c: sum(r.json()["event"] == "Hangup" for r in c.events()) >= len(channels))
    hangups = [r.json() for r in crm.events() if r.json()["event"] == "Hangup"]
    assert {h["chan"] for h in hangups} == channels
    assert all((h["caller"], h["exten"]) == ("5552001", "9002") for h in hangups)


def agi_address(salara: SalaraProcess) -> tuple[str, int]:
    host, _, port = salara.env["SALARA_AGI_LISTEN"].rpartition(":")
    return host, int(port)


def forged_session(salara: SalaraProcess, uniqueid: str, channel: str, caller: str, linkedid: str) -> list[str]:
    """A local process posing as Asterisk: a hand-written variable block, every command answered.

    ``GET FULL VARIABLE`` (the Linkedid) is answered with ``linkedid``. Returns the commands salara sent.
    """
    block = {
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
    commands = []
    with socket.create_connection(agi_address(salara), timeout=AGI_WAIT_S) as sock:
        sock.sendall("".join(f"agi_{k}: {v}\n" for k, v in block.items()).encode() + b"\n")
        stream = sock.makefile("rb")
        while line := stream.readline():
            command = line.decode().rstrip("\n")
            commands.append(command)
            answer = f"200 result=1 ({linkedid})\n" if command.startswith("GET FULL VARIABLE") else "200 result=1\n"
            sock.sendall(answer.encode())
    return commands


def test_forged_fastagi_requests_learn_nothing_and_change_no_call(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    text = config_text(crm).replace("dest_url_event=http://127.0.0.1:3000/post", f"dest_url_event={crm.url}/events")
    salara = salara_factory(text)
    route_here(salara)
    incoming_call("5552001")
    step = routed_to(ami_events, "9002")  # a real call, tracked, now in 9002's Wait
    live, name, linkedid = step["Uniqueid"], step["Channel"], step["Linkedid"]
    forgeries = [
        ("1800000000.1", "Local/5100@phones-00000001;2", "5552002"),  # no such channel
        (live, name, "5552002"),  # the live call's channel, another caller
        (live, "PJSIP/8001-00000001", "5552001"),  # the live call's uniqueid, another channel name
    ]
    for uniqueid, channel, caller in forgeries:
        assert forged_session(salara, uniqueid, channel, caller, linkedid) == [], (uniqueid, channel, caller)
    assert [r.path for r in crm.lookups()] == ["/lookup?phone=5552001"], "the CRM was asked about the real caller only"
    warnings = [line for line in salara.log().splitlines() if "not a live channel as AMI reports it" in line]
    assert len(warnings) == 3 and all(" WARNING " in w and "FastAGI 127.0.0.1:" in w for w in warnings)
    pbx.hangup_all()
    channels = {e["Channel"] for e in ami_events.snapshot() if e.get("Linkedid") == linkedid}
    crm.wait_for(lambda c: sum(r.json()["event"] == "Hangup" for r in c.events()) >= len(channels))
    hangups = [r.json() for r in crm.events() if r.json()["event"] == "Hangup"]
    assert all((h["caller"], h["exten"]) == ("5552001", "9002") for h in hangups), "the tracked call kept its parties"


def idle_connections(salara: SalaraProcess, count: int) -> list[socket.socket]:
    """Connections that send nothing (paced: salara's listen backlog is 100)."""
    sockets = []
    for _ in range(count):
        sockets.append(socket.create_connection(agi_address(salara)))
        time.sleep(0.002)
    return sockets


def test_idle_connections_do_not_keep_a_call_unrouted(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    # All 200 sessions ([agi] max_sessions) taken by idle sockets kept open long ([agi] header_timeout).
    salara = salara_factory(config_text(crm), SALARA_AGI_HEADER_TIMEOUT="30")
    route_here(salara)
    idle = idle_connections(salara, 200)
    try:
        time.sleep(0.2)
        incoming_call("5552001")
        routed_to(ami_events, "9002")
        idle[0].settimeout(AGI_WAIT_S)
        assert idle[0].recv(1) == b"", "the oldest idle connection made room"
        idle += idle_connections(salara, 50)
        time.sleep(0.3)
    finally:
        for sock in idle:
            sock.close()
    overload = [line for line in salara.log().splitlines() if "WARNING salara.agi.server" in line]
    assert len(overload) == 1, overload  # rate-limited, not one line per connection
    assert "all 200 sessions taken; 127.0.0.1:" in overload[0]


def test_silent_connections_are_dropped_quickly_by_default(salara_factory: SalaraFactory, crm: FakeCrm) -> None:
    salara = salara_factory(config_text(crm))
    with socket.create_connection(agi_address(salara), timeout=AGI_WAIT_S) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < 4  # [agi] header_timeout 1 s (it was 5 s)


def test_while_ami_is_down_calls_are_still_routed_untracked(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        ami_port = closed.getsockname()[1]  # nothing listens there
    salara = salara_factory(config_text(crm), start=False, SALARA_AMI_PORT=str(ami_port))
    salara.start(wait_ready=False)
    route_here(salara)
    incoming_call("5552001")
    routed_to(ami_events, "9002")  # extension states unknown: the CRM's answer taken on trust
    assert "AMI is not connected; routing without tracking" in salara.log()
