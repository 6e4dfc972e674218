"""SIGHUP on the real Asterisk: the config read again, without a restart, by a running ``salara serve``.

``[event] newchannel`` and ``hangup`` are keys no file watcher re-reads (the
route table and the tokens have their own): a call placed with them at 0
gives the CRM nothing; after the file says 1 and SIGHUP, the next call's
Newchannel and Hangup reach the CRM, from the same process. A file that no
longer loads keeps the config in use (events still flow, the API still
serves) and says why in the log; a key that needs a restart is named there.

Calls go through phone 8001, which the test PBX shares with other suites: a
run that fails because it was busy (409 operator_unavailable) is one to rerun.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess
from tests.crm import FakeCrm

WAIT_S = 30.0

pytestmark = pytest.mark.pbx


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm().start()
    yield server
    server.stop()


def swap(text: str, pattern: str, replacement: str) -> str:
    """``text`` with the one line ``pattern`` (a regex) matches replaced; fails if the example lost that line."""
    changed, count = re.subn(rf"(?m)^{pattern}$", replacement, text, count=1)
    assert count == 1, f"salara.conf.example has no line {pattern!r}"
    return changed


def config_text(crm: FakeCrm, *, newchannel: int, hangup: int, ping_interval: int = 20, broken: bool = False) -> str:
    """The example with events to ``crm`` (extended bodies: they carry the call's id), one at a time, in order."""
    text = swap(EXAMPLE_CONFIG.read_text(), r"dest_url_event=.*", f"dest_url_event={crm.url}/events")
    for key, value in (("newchannel", newchannel), ("hangup", hangup), ("newexten", 0), ("agentcon", 0)):
        text = swap(text, rf"{key}=\d+", f"{key}={value}")
    text = swap(text, r"payload=compat", "payload=extended")
    text = swap(text, r"concurrency=\d+", "concurrency=1")  # one POST at a time: delivered in the order stored
    text = swap(text, r"ping_interval=\d+", f"ping_interval={ping_interval}")
    if broken:
        text = swap(text, r"timeout_makecall=\d+", "timeout_makecall=soon")
    return text


def rewrite(salara: SalaraProcess, text: str) -> None:
    path = salara.workdir / "salara.conf"
    path.write_text(text)
    path.chmod(0o600)


def reload(salara: SalaraProcess, marker: str) -> str:
    """SIGHUP, then the log once it has one more line with ``marker`` (the reload's outcome)."""
    assert salara.proc is not None
    before = salara.log().count(marker)
    salara.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT_S
    while salara.log().count(marker) == before:
        assert time.monotonic() < deadline, f"no {marker!r} after SIGHUP:\n{salara.log()}"
        assert salara.proc.poll() is None, f"salara exited on SIGHUP:\n{salara.log()}"
        time.sleep(0.05)
    return salara.log()


def place_and_wait(salara: SalaraProcess) -> str:
    """A call from 8001 (the phone answers) to 9002 (answers, waits 5 s); its id once it has ended."""
    answer = salara.post({"from": "8001", "to": "9002"}, path="/v1/calls")
    assert answer.status_code == 201, answer.text  # 409 operator_unavailable: 8001 busy elsewhere, rerun
    call_id: str = answer.json()["id"]
    deadline = time.monotonic() + WAIT_S
    while httpx.get(f"{salara.url}/v1/calls/{call_id}", timeout=10).json()["state"] != "ended":
        assert time.monotonic() < deadline, f"call {call_id} did not end"
        time.sleep(0.1)
    return call_id


def bodies(crm: FakeCrm) -> list[dict[str, Any]]:
    return [event.json() for event in crm.events()]


def events_of(crm: FakeCrm, call_id: str) -> list[str]:
    return [body["event"] for body in bodies(crm) if body.get("linkedid") == call_id]


def test_sighup_turns_on_events_no_watcher_rereads_without_a_restart(
    salara_factory: SalaraFactory, crm: FakeCrm
) -> None:
    salara = salara_factory(config_text(crm, newchannel=0, hangup=0))
    assert salara.proc is not None
    pid = salara.proc.pid
    first = place_and_wait(salara)

    rewrite(salara, config_text(crm, newchannel=1, hangup=1))
    log = reload(salara, "config reloaded from")
    line = next(line for line in reversed(log.splitlines()) if "config reloaded from" in line)
    assert "[event] newchannel" in line and "[event] hangup" in line

    second = place_and_wait(salara)
    crm.wait_for(lambda c: "Hangup" in events_of(c, second), timeout_s=WAIT_S)
    assert events_of(crm, second)[0] == "Newchannel"
    # One worker posts in the order stored: the first call's events, had there been any, came before.
    assert events_of(crm, first) == []
    assert salara.proc.poll() is None and salara.proc.pid == pid
    assert os.path.exists(salara.workdir / "outbox.db")


def test_sighup_with_a_broken_file_keeps_the_config_in_use(salara_factory: SalaraFactory, crm: FakeCrm) -> None:
    salara = salara_factory(config_text(crm, newchannel=1, hangup=1))
    good = config_text(crm, newchannel=1, hangup=1)

    rewrite(salara, config_text(crm, newchannel=0, hangup=0, broken=True))
    log = reload(salara, "not reloaded")
    line = next(line for line in reversed(log.splitlines()) if "not reloaded" in line)
    assert "[event] timeout_makecall" in line and "still using the one loaded before" in line

    call_id = place_and_wait(salara)  # events as the old config says (newchannel and hangup 1), not 0
    crm.wait_for(lambda c: "Hangup" in events_of(c, call_id), timeout_s=WAIT_S)
    assert events_of(crm, call_id)[0] == "Newchannel"

    rewrite(salara, good.replace("\nping_interval=20\n", "\nping_interval=7\n"))
    log = reload(salara, "until salara restarts")
    assert "[ami] ping_interval" in next(line for line in reversed(log.splitlines()) if "until salara restarts" in line)
    assert salara.proc is not None and salara.proc.poll() is None


def test_the_reload_plan_takes_live_keys_and_keeps_restart_only_ones() -> None:
    from salara.config import Config, Event, Url, build, parse_text
    from salara.config.changes import plan

    old = build(parse_text("[url]\ndest_url_event=http://crm/events\n[ami]\nhost=10.0.0.1\n[event]\nhangup=1\n"))
    new = build(parse_text("[event]\nnewchannel=2\nhangup=2\n[ami]\nhost=10.0.0.2\n[general]\nlog_format=json\n"))
    reloaded = plan(old, new)
    assert reloaded.changed == ("[general] log_format", "[event] newchannel")
    assert reloaded.restart == (
        "[event] hangup: changed to or from 2 (which channels are kept over a restart)",
        "[url] dest_url_event: set or emptied (events go to the CRM, or not)",
        "[ami] host",
    )
    config = reloaded.config
    assert (config.general.log_format, config.event.newchannel) == ("json", 2)  # taken
    assert (config.event.hangup, config.url.dest_url_event, config.ami.host) == (1, "http://crm/events", "10.0.0.1")
    assert plan(Config(), Config(event=Event(), url=Url())).changed == ()
