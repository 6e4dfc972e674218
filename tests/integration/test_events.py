"""Call events to a real HTTP CRM, from calls on the real test Asterisk (SPEC §2).

Expected payloads are derived from what Asterisk itself reported on a separate
AMI session (EventWatch), by the SPEC's rules, and compared exactly with what
the CRM received.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest

from testpbx import pbx
from tests.amiwatch import AMIRecorder, EventWatch
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess
from tests.crm import FakeCrm, Received

STATES = ["DOWN", "RESERVED", "OFFHOOK", "DIALING", "RING", "RINGING", "UP", "BUSY", "DIALING_OFFHOOK", "PRERING"]


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm().start()
    yield server
    server.stop()


def config_text(
    crm: FakeCrm,
    *,
    watch: int = 1,
    newchannel: int = 1,
    hangup: int = 1,
    newexten: int = 1,
    agentcon: int = 1,
    extra: str = "",
) -> str:
    text = EXAMPLE_CONFIG.read_text()
    text = text.replace("dest_url_event=http://127.0.0.1:3000/post", f"dest_url_event={crm.url}/events")
    for key, value in (
        ("watch_makecall", watch),
        ("newchannel", newchannel),
        ("hangup", hangup),
        ("newexten", newexten),
        ("agentcon", agentcon),
    ):
        text = text.replace(f"\n{key}=1\n", f"\n{key}={value}\n")
    return text + extra


@pytest.fixture(autouse=True)
def clean_channels(asterisk: None) -> Iterator[None]:
    pbx.hangup_all()
    yield
    pbx.hangup_all()


def make_call(salara: SalaraProcess, operator: str = "8001", phone: str = "9002") -> None:
    assert salara.post({"operator": operator, "phone": phone}).json() == {"result": 0, "text": "Idle"}


def call_events(watch: EventWatch, linkedid: str) -> list[dict[str, str]]:
    return [e for e in watch.snapshot() if e.get("Linkedid") == linkedid]


def wait_call_over(watch: EventWatch, linkedid: str, timeout_s: float = 20) -> list[dict[str, str]]:
    """All AMI events of a call, once every channel it opened has hung up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = call_events(watch, linkedid)
        opened = {e["Uniqueid"] for e in events if e.get("Event") == "Newchannel"}
        closed = {e["Uniqueid"] for e in events if e.get("Event") == "Hangup"}
        if opened and opened == closed:
            return events
        time.sleep(0.1)
    raise AssertionError(f"call {linkedid} did not end")


def expected(
    events: list[dict[str, str]], modes: dict[str, int], parties: tuple[str, str] | None
) -> list[dict[str, str]]:
    """The CRM events SPEC §2 asks for, from Asterisk's own AMI events of one call."""
    tracked = parties is not None
    out = []
    for e in events:
        name = e.get("Event")
        state = STATES[int(e["ChannelState"])] if e.get("ChannelState", "").isdigit() else "UNKNOWN"
        caller, exten = parties if parties else (e.get("CallerIDNum", ""), e.get("Exten", ""))
        if name in ("Newchannel", "Hangup"):
            mode = modes["newchannel" if name == "Newchannel" else "hangup"]
            if mode == 2 or (mode == 1 and tracked):
                out.append({"event": name, "chan": e["Channel"], "caller": caller, "exten": exten, "state": state})
        elif name == "Newexten":
            mode = modes["newexten"]
            if mode == 3 or (tracked and (mode == 2 or (mode == 1 and state == "UP"))):
                out.append(
                    {
                        "event": name,
                        "chan": e["Channel"],
                        "caller": caller,
                        "exten": exten,
                        "state": state,
                        "app": e.get("Application", ""),
                    }
                )
    return out


def received_payloads(crm: FakeCrm) -> list[dict[str, str]]:
    return [r.json() for r in crm.events()]


def operator_call(watch: EventWatch, operator: str = "8001") -> str:
    """The Linkedid of the call salara placed to the operator's phone."""
    first = watch.wait_for(
        lambda e: e.get("Event") == "Newchannel" and e.get("Channel", "").startswith(f"PJSIP/{operator}-")
    )
    return first["Linkedid"]


@pytest.mark.parametrize(
    "modes",
    [
        {"newchannel": 1, "hangup": 1, "newexten": 1, "agentcon": 1},
        {"newchannel": 1, "hangup": 1, "newexten": 2, "agentcon": 2},
        {"newchannel": 2, "hangup": 2, "newexten": 3, "agentcon": 3},
        {"newchannel": 0, "hangup": 0, "newexten": 0, "agentcon": 0},
    ],
    ids=["mode1", "mode2", "mode3", "mode0"],
)
def test_originated_call_events_match_the_spec_exactly(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch, modes: dict[str, int]
) -> None:
    salara = salara_factory(config_text(crm, **modes))
    make_call(salara)
    linkedid = operator_call(ami_events)
    assert linkedid.startswith("salara-"), "salara names the call it places"
    ami_events.wait_for(
        lambda e: e.get("Event") == "Newexten" and e.get("Linkedid") == linkedid and e.get("Application") == "Wait"
    )
    pbx.hangup_all()
    events = wait_call_over(ami_events, linkedid)
    want = expected(events, modes, ("8001", "9002"))
    if want:
        crm.wait_for(lambda c: len(c.events()) >= len(want))
    time.sleep(0.5)  # nothing more may come
    assert received_payloads(crm) == want
    if modes["newchannel"] == 0 and modes["newexten"] == 0:
        assert want == []


def test_untracked_calls_only_in_all_calls_modes(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    modes = {"newchannel": 1, "hangup": 1, "newexten": 2, "agentcon": 2}
    salara_factory(config_text(crm, **modes))
    other = FakeCrm().start()
    try:
        modes_all = {"newchannel": 2, "hangup": 2, "newexten": 3, "agentcon": 3}
        salara_factory(config_text(other, **modes_all))
        reply = pbx.ami_command(
            "Action: Originate", "Channel: Local/9001@sim", "Application: Wait", "Data: 1", "Async: true"
        )
        assert "Success" in reply
        first = ami_events.wait_for(
            lambda e: e.get("Event") == "Newchannel" and e.get("Channel", "").startswith("Local/9001@sim-")
        )
        events = wait_call_over(ami_events, first["Linkedid"])
        want = expected(events, modes_all, None)
        assert want, "the call produced events"
        other.wait_for(lambda c: len(c.events()) >= len(want))
        time.sleep(0.5)
        assert received_payloads(other) == want
        assert crm.events() == [], "tracked-only modes send nothing for an untracked call"
    finally:
        other.stop()


def test_crm_outage_and_sigkill_lose_nothing(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    modes = {"newchannel": 2, "hangup": 2, "newexten": 3, "agentcon": 3}
    salara = salara_factory(config_text(crm, **modes))
    crm.stop()  # connection refused from now on
    linkedids = []
    for exten in ("9001", "9002", "9003"):
        reply = pbx.ami_command(
            "Action: Originate", f"Channel: Local/{exten}@sim", "Application: Wait", "Data: 1", "Async: true"
        )
        assert "Success" in reply
        first = ami_events.wait_for(
            lambda e, x=exten: (
                e.get("Event") == "Newchannel"
                and e.get("Channel", "").startswith(f"Local/{x}@sim-")
                and e.get("Linkedid") not in linkedids
            )
        )
        linkedids.append(first["Linkedid"])
    want = {lid: expected(wait_call_over(ami_events, lid), modes, None) for lid in linkedids}
    total = sum(len(v) for v in want.values())
    # Every event is in the outbox before salara dies.
    db = salara.workdir / "outbox.db"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            stored = conn.execute("select count(*) from deliveries").fetchone()[0]
        if stored >= total:
            break
        time.sleep(0.1)
    assert stored >= total
    salara.stop(signal.SIGKILL)
    salara.start()
    crm.start()  # the same port again
    crm.wait_for(lambda c: len({r.headers["webhook-id"] for r in c.events()}) >= stored, timeout_s=30)
    time.sleep(0.5)
    got: dict[str, list[Received]] = {}
    for record in crm.events():
        got.setdefault(record.headers["webhook-id"], []).append(record)
    # Duplicates (at-least-once) carry the same id and the same body.
    for copies in got.values():
        assert len({c.body for c in copies}) == 1
    firsts = sorted((copies[0] for copies in got.values()), key=lambda r: r.at)
    by_call: dict[str, list[dict[str, str]]] = {}
    channel_call = {e["Channel"]: e["Linkedid"] for e in ami_events.snapshot() if e.get("Linkedid") in linkedids}
    for record in firsts:
        payload = record.json()
        if payload["chan"] in channel_call:  # mode 2 also reports calls of earlier tests ending
            by_call.setdefault(channel_call[payload["chan"]], []).append(payload)
    assert by_call == want, "every event arrived, in per-call order"


def test_slow_crm_does_not_delay_the_api(salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch) -> None:
    crm.delay_s = 2
    modes = {"newchannel": 2, "hangup": 2, "newexten": 3, "agentcon": 3}
    salara = salara_factory(config_text(crm, **modes))
    for exten in ("9001", "9002"):
        pbx.ami_command(
            "Action: Originate", f"Channel: Local/{exten}@sim", "Application: Wait", "Data: 1", "Async: true"
        )
    crm.wait_for(lambda c: len(c.events()) >= 1)
    answers = []
    for _ in range(20):
        started = time.monotonic()
        answers.append((salara.post({"exten": "9001"}).json(), time.monotonic() - started))
    pending = [r for r in crm.events() if r.answered_at is None]
    assert pending, "deliveries were still pending while the API answered"
    assert all(answer == {"result": 0, "text": "Idle"} for answer, _ in answers)


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The README's verification: base64 HMAC-SHA256 over "id.timestamp.body"."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    expected_sig = base64.b64encode(mac).decode()
    return any(
        hmac.compare_digest(expected_sig, part.partition(",")[2]) for part in headers["webhook-signature"].split()
    )


@pytest.mark.parametrize(
    "secret", ["plain-shared-secret", "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()]
)
def test_signed_requests_verify(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch, secret: str
) -> None:
    salara = salara_factory(config_text(crm), SALARA_URL_WEBHOOK_SECRET=secret)
    make_call(salara)
    crm.wait_for(lambda c: len(c.events()) >= 1)
    record = crm.events()[0]
    assert abs(int(record.headers["webhook-timestamp"]) - time.time()) < 60
    assert verify_standard_webhook(secret, record.headers, record.body)
    assert not verify_standard_webhook("wrong-secret", record.headers, record.body)
    assert not verify_standard_webhook(secret, record.headers, record.body + b" ")
    assert secret not in salara.log()


def test_410_stops_retries_and_500_is_retried(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    attempts: dict[str, int] = {}

    def status_for(body: bytes) -> int | None:
        payload = json.loads(body)
        key = f"{payload['event']}:{payload['chan']}:{payload.get('app', '')}"
        attempts[key] = attempts.get(key, 0) + 1
        if payload["event"] == "Newchannel":
            return 410
        if payload["event"] == "Hangup" and attempts[key] <= 2:
            return 500
        return None

    crm.status_for = status_for
    salara = salara_factory(config_text(crm, newexten=0))
    make_call(salara)
    linkedid = operator_call(ami_events)
    pbx.hangup_all()
    wait_call_over(ami_events, linkedid)
    crm.wait_for(lambda c: sum(1 for r in c.events() if r.json()["event"] == "Hangup") >= 3, timeout_s=30)
    time.sleep(3)  # time for (wrong) retries of the 410 event
    newchannels = [r for r in crm.events() if r.json()["event"] == "Newchannel"]
    hangups = [r for r in crm.events() if r.json()["event"] == "Hangup"]
    assert len(newchannels) == 1, "410 Gone is not retried"
    assert len(hangups) == 3 and len({r.headers["webhook-id"] for r in hangups}) == 1, "500 retried, same id"
    assert httpx.get(salara.url + "/ready").status_code == 200


def run_cli(salara: SalaraProcess, *args: str) -> str:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "salara", "-c", str(salara.workdir / "salara.conf"), *args],
        capture_output=True,
        text=True,
        env=salara.env,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_operator_commands(salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch) -> None:
    crm.status_for = lambda body: 410 if json.loads(body)["event"] == "Newchannel" else None
    salara = salara_factory(config_text(crm, newexten=0))
    make_call(salara, phone="9999")  # answers and waits: the call lives until hung up
    linkedid = operator_call(ami_events)
    tracked = run_cli(salara, "show", "tracked")
    assert linkedid in tracked and "caller=8001 exten=9999" in tracked
    crm.wait_for(lambda c: any(r.json()["event"] == "Newchannel" for r in c.events()))
    time.sleep(0.5)
    listed = run_cli(salara, "events", "list", "--failed")
    assert "dead 1" in listed and '"event":"Newchannel"' in listed
    crm.status_for = None
    assert "1 event(s) queued" in run_cli(salara, "events", "retry")
    crm.wait_for(lambda c: sum(r.json()["event"] == "Newchannel" for r in c.events()) == 2)
    assert run_cli(salara, "forget", linkedid).strip() == f"{linkedid} forgotten"
    assert linkedid not in run_cli(salara, "show", "tracked")
    before = len(crm.events())
    assert run_cli(salara, "send", "post").startswith("HTTP 200")
    assert crm.events()[before].json()["event"] == "Test"


def test_a_hangup_missed_while_disconnected_ends_tracking_after_reconnect(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch, ami_recorder: AMIRecorder
) -> None:
    salara = salara_factory(config_text(crm), SALARA_AMI_PORT=str(ami_recorder.port))
    make_call(salara, phone="9999")  # answers and waits until hung up
    linkedid = operator_call(ami_events)
    assert linkedid in run_cli(salara, "show", "tracked")
    ami_recorder.refusing = True
    ami_recorder.cut()  # salara cannot see the Hangup that follows
    pbx.hangup_all()
    wait_call_over(ami_events, linkedid)
    assert linkedid in run_cli(salara, "show", "tracked")
    ami_recorder.refusing = False  # back: the resync after login ends the call's tracking
    deadline = time.monotonic() + 15
    while linkedid in run_cli(salara, "show", "tracked"):
        assert time.monotonic() < deadline, "tracking did not end after the reconnect"
        time.sleep(0.2)


def last_states(events: list[dict[str, str]]) -> dict[str, tuple[str, str]]:
    """Each channel's name and last state before its Hangup, by Uniqueid (what a synthesized Hangup says)."""
    known: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.get("Event") in ("Newchannel", "Newstate"):
            known[e["Uniqueid"]] = (e["Channel"], STATES[int(e["ChannelState"])])
    return known


def hangups_of(crm: FakeCrm, linkedid: str) -> list[dict[str, object]]:
    return [p for r in crm.events() if (p := r.json())["event"] == "Hangup" and p.get("linkedid") == linkedid]


def wait_answered_call(salara: SalaraProcess, crm: FakeCrm, ami_events: EventWatch) -> str:
    """Place a tracked call that answers and waits (9999); return its Linkedid once salara has stored its events."""
    make_call(salara, phone="9999")
    linkedid = operator_call(ami_events)
    # Newexten Wait (state UP) comes after every state change of the call: once the
    # CRM has it, salara has stored (and tracks) all that came before.
    crm.wait_for(lambda c: any(r.json().get("app") == "Wait" and r.json()["linkedid"] == linkedid for r in c.events()))
    return linkedid


def assert_synthesized(
    hangups: list[dict[str, object]], expected: dict[str, tuple[str, str]], parties: tuple[str, str]
) -> None:
    assert sorted(str(h["uniqueid"]) for h in hangups) == sorted(expected), "one Hangup per channel, no more"
    for hangup in hangups:
        chan, state = expected[str(hangup["uniqueid"])]
        compat = {"event": "Hangup", "chan": chan, "caller": parties[0], "exten": parties[1], "state": state}
        assert {k: hangup[k] for k in compat} == compat
        assert hangup["synthesized"] is True
        assert list(hangup) == [*compat, "uniqueid", "linkedid", "pbx", "tracked", "timestamp", "id", "synthesized"]


def test_hangups_missed_while_disconnected_reach_the_crm(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch, ami_recorder: AMIRecorder
) -> None:
    salara = salara_factory(config_text(crm), SALARA_AMI_PORT=str(ami_recorder.port), SALARA_EVENT_PAYLOAD="extended")
    linkedid = wait_answered_call(salara, crm, ami_events)
    ami_recorder.refusing = True
    ami_recorder.cut()  # salara cannot see the Hangups that follow
    pbx.hangup_all()
    events = wait_call_over(ami_events, linkedid)
    ami_recorder.refusing = False  # back: the resync after login finds the channels gone
    expected_channels = last_states(events)
    crm.wait_for(lambda c: len(hangups_of(c, linkedid)) >= len(expected_channels), timeout_s=20)
    time.sleep(0.5)  # nothing more may come
    assert_synthesized(hangups_of(crm, linkedid), expected_channels, ("8001", "9999"))
    assert crm.events()[-1].json()["event"] == "Hangup", "after every other event of the call"
    assert linkedid not in run_cli(salara, "show", "tracked")


def test_a_tracked_call_survives_a_sigkill_and_gets_its_missed_hangups(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    salara = salara_factory(config_text(crm), SALARA_EVENT_PAYLOAD="extended")
    linkedid = wait_answered_call(salara, crm, ami_events)
    salara.stop(signal.SIGKILL)
    pbx.hangup_all()  # the call ends while salara is not running
    events = wait_call_over(ami_events, linkedid)
    salara.start()
    expected_channels = last_states(events)
    crm.wait_for(lambda c: len(hangups_of(c, linkedid)) >= len(expected_channels), timeout_s=20)
    time.sleep(0.5)
    assert_synthesized(hangups_of(crm, linkedid), expected_channels, ("8001", "9999"))
    assert linkedid not in run_cli(salara, "show", "tracked")


def test_untracked_channels_in_all_calls_mode_get_their_missed_hangups_after_a_restart(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    modes = {"newchannel": 2, "hangup": 2, "newexten": 0, "agentcon": 0}
    salara = salara_factory(config_text(crm, **modes), SALARA_EVENT_PAYLOAD="extended")
    linkedid = f"test-untracked-{time.time_ns()}"  # the PBX is shared: know this call by its own id
    reply = pbx.ami_command(
        "Action: Originate",
        "Channel: Local/9999@sim",
        "Application: Wait",
        "Data: 600",
        f"ChannelId: {linkedid}",
        "Async: true",
    )
    assert "Success" in reply
    ami_events.wait_for(
        lambda e: e.get("Event") == "Newexten" and e.get("Linkedid") == linkedid and e.get("Application") == "Wait"
    )
    crm.wait_for(lambda c: sum(r.json()["linkedid"] == linkedid for r in c.events()) >= 2)
    time.sleep(1)  # the call's state changes are stored too
    before = last_states(call_events(ami_events, linkedid))
    salara.stop(signal.SIGKILL)
    pbx.hangup_all()
    events = wait_call_over(ami_events, linkedid)
    assert last_states(events) == before
    salara.start()
    crm.wait_for(lambda c: len(hangups_of(c, linkedid)) >= len(before), timeout_s=20)
    time.sleep(0.5)
    # Untracked: the parties each channel last reported.
    caller_exten = {}
    for e in events:
        if e.get("Event") in ("Newchannel", "Newstate"):
            caller_exten[e["Uniqueid"]] = (e.get("CallerIDNum", ""), e.get("Exten", ""))
    hangups = hangups_of(crm, linkedid)
    assert sorted(str(h["uniqueid"]) for h in hangups) == sorted(before)
    for hangup in hangups:
        uniqueid = str(hangup["uniqueid"])
        assert (hangup["chan"], hangup["state"]) == before[uniqueid]
        assert (hangup["caller"], hangup["exten"]) == caller_exten[uniqueid]
        assert hangup["synthesized"] is True
