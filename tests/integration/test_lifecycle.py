"""Call lifecycle events on the real test Asterisk, posted to a real HTTP CRM.

Calls placed through ``/v1/calls`` ring the real SIP phone 8001 (baresip,
auto-answer) first; 9001 answers and waits 5 s, 9998 rings and never
answers, 8002 never registers. A busy extension and an incoming call that
rings unanswered have no place in the shared dialplan: they are added for
these tests (AMI ``DialplanExtensionAdd``) in a context of their own, and
removed after. Each test hangs up only its own calls.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from testpbx import pbx
from tests import dialplan as shared_dialplan
from tests.amiwatch import EventWatch
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess
from tests.crm import FakeCrm
from tests.integration.test_v1_api import phone_idle, wait_for

CONTEXT = "salara-lifecycle-test"
BUSY = "7001"
"""Dials a Local channel that answers busy: Dial's status BUSY."""
INBOUND = "7100"
"""Where an incoming call enters: the FastAGI route of the salara under test (its port in the AppData)."""
RINGS = "7101"
"""The destination routing picks: rings 3 s, then hangs up unanswered (Custom device state Idle, so it is good)."""
RINGS_DEVICE = "Custom:salara-lifecycle-7101"


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def phone_is_free(asterisk: None) -> None:
    """Calls ring phone 8001: wait until an earlier call has left it."""
    wait_for("phone 8001 idle", phone_idle, 20)


def add_extension(exten: str, priority: str, application: str, data: str = "") -> None:
    shared_dialplan.add_extension(CONTEXT, exten, priority, application, data)


@pytest.fixture
def dialplan(asterisk: None) -> Iterator[None]:
    """This module's own extensions, in a context nobody else uses."""
    add_extension("8001", "hint", "PJSIP/8001")  # the operator's state, checked in the call's context
    add_extension(BUSY, "1", "Dial", f"Local/{BUSY}b@{CONTEXT}/n,10")
    add_extension(BUSY, "2", "Hangup")
    add_extension(f"{BUSY}b", "1", "Busy", "5")
    add_extension(RINGS, "hint", RINGS_DEVICE)
    add_extension(RINGS, "1", "Ringing")
    add_extension(RINGS, "2", "Wait", "3")
    add_extension(RINGS, "3", "Hangup")
    pbx.ami_command("Action: Setvar", f"Variable: DEVICE_STATE({RINGS_DEVICE})", "Value: NOT_INUSE")
    yield
    shared_dialplan.remove_extensions(CONTEXT, "8001", BUSY, f"{BUSY}b", RINGS, INBOUND)


class Lifecycle:
    """A salara posting lifecycle events to ``crm``, and the calls a test placed through it."""

    def __init__(self, salara: SalaraProcess, crm: FakeCrm) -> None:
        self.salara = salara
        self.crm = crm
        self.placed: list[str] = []

    def place(self, to: str, context: str = "phones", **extra: object) -> str:
        body = {"from": "8001", "to": to, "context": context, **extra}
        response = httpx.post(f"{self.salara.url}/v1/calls", json=body, timeout=15)
        assert response.status_code == 201, response.text
        call_id: str = response.json()["id"]
        self.placed.append(call_id)
        return call_id

    def hang_up(self, call_id: str) -> None:
        response = httpx.delete(f"{self.salara.url}/v1/calls/{call_id}", timeout=15)
        # (409 call_ended: the shared phone hung up first, e.g. for another test)
        assert response.status_code == 204 or response.json()["error"] == "call_ended", response.text

    def bodies(self) -> list[dict[str, Any]]:
        """Every event the CRM got, in order, each once: delivery is at least once, a CRM drops repeated ids."""
        seen: set[str] = set()
        out = []
        for received in self.crm.events():
            body = received.json()
            if body.get("id") not in seen:
                seen.add(body.get("id"))
                out.append(body)
        return out

    def events(self, call_id: str) -> list[dict[str, Any]]:
        """The lifecycle events of one call the CRM got, in the order it got them."""
        return [b for b in self.bodies() if b.get("call_id") == call_id and "type" in b]

    def ended(self, call_id: str, timeout_s: float = 30) -> list[dict[str, Any]]:
        """The call's lifecycle events once its call.ended arrived (and a moment for anything after it)."""
        self.crm.wait_for(lambda _: any(b["type"] == "call.ended" for b in self.events(call_id)), timeout_s)
        time.sleep(0.5)  # nothing may come after it
        return self.events(call_id)


@pytest.fixture
def lifecycle(salara_factory: SalaraFactory, crm: FakeCrm) -> Iterator[Lifecycle]:
    text = EXAMPLE_CONFIG.read_text().replace(
        "dest_url_event=http://127.0.0.1:3000/post", f"dest_url_event={crm.url}/events"
    )
    salara = salara_factory(
        text,
        SALARA_EVENT_PAYLOAD="extended",
        SALARA_EVENT_LIFECYCLE="yes",
        SALARA_URL_DEST_URL="",  # routing asks no CRM: the [general] default decides
        SALARA_GENERAL_DEFAULT=RINGS,
    )
    made = Lifecycle(salara, crm)
    yield made
    for call_id in made.placed:
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{salara.url}/v1/calls/{call_id}", timeout=5)


class TimedWatch(EventWatch):
    """An AMI watch that notes when each event arrived (``_at``, Unix seconds as text)."""

    def __init__(self) -> None:
        super().__init__()
        watch = self

        class Timed(list[dict[str, str]]):
            def append(self, event: dict[str, str]) -> None:
                event["_at"] = repr(time.time())
                super().append(event)

        with watch._lock:
            watch.events = Timed(watch.events)


@pytest.fixture
def timed_events(asterisk: None) -> Iterator[TimedWatch]:
    watch = TimedWatch()
    yield watch
    watch.close()


def test_an_answered_placed_call_tells_its_life_in_order_with_its_client_state(
    lifecycle: Lifecycle, timed_events: TimedWatch
) -> None:
    call_id = lifecycle.place("9001", client_state="lead-4711")
    got = lifecycle.ended(call_id)
    assert [(b["type"], b.get("leg")) for b in got] == [
        ("call.started", None),
        ("call.ringing", "operator"),
        ("call.answered", "operator"),
        ("call.answered", "called"),
        ("call.ended", None),
    ]
    for body in got:
        assert body["client_state"] == "lead-4711"
        assert (body["call_id"], body["direction"], body["from"], body["to"], body["operator"]) == (
            call_id,
            "outbound",
            "8001",
            "9001",
            "8001",
        )
        assert body["timestamp"].endswith("Z") and len(body["id"]) == 32
    ringing = got[1]
    assert ringing["endpoint"] == "PJSIP/8001" and ringing["channel"].startswith("PJSIP/8001-")
    ended = got[-1]
    assert ended["result"] == "answered" and ended["missed"] is False
    assert ended["operator_result"] == "answered"
    assert "reconciled" not in ended and "approximate" not in ended
    # talk_s: how long the called side was up, as Asterisk reported it to another AMI session.
    events = [e for e in timed_events.snapshot() if e.get("Linkedid") == call_id]
    answered = next(e for e in events if e.get("Event") == "Newexten" and e.get("Application") == "Answer")
    last_hangup = [e for e in events if e.get("Event") == "Hangup"][-1]
    called_up_s = float(last_hangup["_at"]) - float(answered["_at"])
    assert abs(ended["talk_s"] - called_up_s) <= 1.0, (ended["talk_s"], called_up_s)
    assert ended["duration_s"] >= ended["talk_s"] > 3
    # The compat events of the call are still there, as they were, in one order with them.
    bodies = lifecycle.bodies()
    mine = [b.get("type") or b["event"] for b in bodies if call_id in (b.get("linkedid"), b.get("call_id"))]
    assert mine[:2] == ["Newchannel", "call.started"] and mine[-2:] == ["Hangup", "call.ended"], mine
    compat = [b for b in bodies if b.get("linkedid") == call_id]
    assert all("type" not in b and "client_state" not in b for b in compat)
    # The /v1 view shows the client_state too.
    view = httpx.get(f"{lifecycle.salara.url}/v1/calls/{call_id}", timeout=5).json()
    assert view["client_state"] == "lead-4711" and view["outcome"]["result"] == "answered"


def test_a_call_to_a_busy_extension_ends_busy(lifecycle: Lifecycle, dialplan: None) -> None:
    call_id = lifecycle.place(BUSY, context=CONTEXT)
    ended = lifecycle.ended(call_id)[-1]
    assert (ended["result"], ended["dial_status"]) == ("busy", "BUSY"), ended
    assert ended["answered_at"] is None and ended["talk_s"] == 0.0 and ended["missed"] is False


def test_a_call_to_an_unregistered_endpoint_ends_failed(lifecycle: Lifecycle) -> None:
    call_id = lifecycle.place("8002")
    got = lifecycle.ended(call_id)
    ended = got[-1]
    assert (ended["result"], ended["dial_status"]) == ("failed", "CHANUNAVAIL"), ended
    assert got[0]["type"] == "call.started"
    assert "called" not in [b.get("leg") for b in got if b["type"] == "call.answered"]


def test_a_call_nobody_answers_ends_no_answer(lifecycle: Lifecycle) -> None:
    call_id = lifecycle.place("9998")  # rings on the operator's channel and never answers
    lifecycle.crm.wait_for(
        lambda _: any(b.get("leg") == "operator" and b["type"] == "call.answered" for b in lifecycle.events(call_id)),
        15,
    )
    time.sleep(2)
    lifecycle.hang_up(call_id)
    ended = lifecycle.ended(call_id)[-1]
    assert ended["result"] == "no_answer", ended
    assert ended["answered_at"] is None and ended["talk_s"] == 0.0


def test_an_inbound_routed_call_nobody_answers_is_missed(
    lifecycle: Lifecycle, dialplan: None, timed_events: TimedWatch
) -> None:
    agi = lifecycle.salara.env["SALARA_AGI_LISTEN"]
    add_extension(INBOUND, "1", "AGI", f"agi://{agi}/route?context={CONTEXT}")
    add_extension(INBOUND, "2", "Hangup")
    call_id = f"salara-lifecycle-in-{time.time_ns()}"  # the PBX is shared: know this call by its own id
    reply = pbx.ami_command(
        "Action: Originate",
        f"Channel: Local/{INBOUND}@{CONTEXT}",
        'CallerID: "Customer" <5557100>',
        "Application: Wait",
        "Data: 20",
        f"ChannelId: {call_id}",
        "Async: true",
    )
    assert "Success" in reply, reply
    got = lifecycle.ended(call_id, timeout_s=30)
    assert (got[0]["type"], got[-1]["type"]) == ("call.started", "call.ended")
    ended = got[-1]
    assert ended["direction"] == "inbound" and ended["to"] == RINGS, ended
    assert ended["missed"] is True and ended["result"] == "no_answer", ended
    assert ended["answered_at"] is None and ended["operator"] is None
    routed = [e for e in timed_events.snapshot() if e.get("Linkedid") == call_id and e.get("Exten") == RINGS]
    assert routed, "routing sent the call on to the ringing destination"


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_call_that_ends_while_salara_is_killed_gets_one_reconciled_call_ended(
    lifecycle: Lifecycle, timed_events: TimedWatch
) -> None:
    call_id = lifecycle.place("9999", client_state="kept?")  # answers and waits until hung up
    lifecycle.crm.wait_for(
        lambda _: any(b.get("leg") == "called" and b["type"] == "call.answered" for b in lifecycle.events(call_id)),
        15,
    )
    channels = httpx.get(f"{lifecycle.salara.url}/v1/calls/{call_id}", timeout=5).json()["channels"]
    time.sleep(1)  # the call's state is stored with its tracking
    killed_at = time.time()
    lifecycle.salara.stop(signal.SIGKILL)
    for channel in channels:  # the call ends while salara is not running
        pbx.ami_command("Action: Hangup", f"Channel: {channel['name']}")
    wait_for(
        "the call's channels gone",
        lambda: all(
            any(e.get("Event") == "Hangup" and e.get("Uniqueid") == c["uniqueid"] for e in timed_events.snapshot())
            for c in channels
        ),
    )
    time.sleep(1)
    lifecycle.salara.start()
    restarted_at = time.time()
    got = lifecycle.ended(call_id)
    ends = [b for b in got if b["type"] == "call.ended"]
    assert len(ends) == 1, got
    [ended] = ends
    assert ended["reconciled"] is True and ended["approximate"] is True
    assert ended["client_state"] == "kept?", "the CRM's state survives the restart"
    assert ended["result"] == "answered" and ended["answered_at"] is not None, "so does the answer"
    assert killed_at - 1 <= unix(ended["ended_at"]) <= restarted_at + 5, "within the outage (at most its end)"
    assert (ended["direction"], ended["from"], ended["to"], ended["operator"]) == ("outbound", "8001", "9999", "8001")
    assert [b["type"] for b in got].count("call.started") == 1, "nothing told again after the restart"


def test_a_transfer_shows_in_call_transferred_and_in_the_summarys_chain(lifecycle: Lifecycle) -> None:
    call_id = lifecycle.place("9999")  # answers and waits until hung up
    lifecycle.crm.wait_for(
        lambda _: any(b.get("leg") == "called" and b["type"] == "call.answered" for b in lifecycle.events(call_id)),
        15,
    )
    moved = httpx.post(
        f"{lifecycle.salara.url}/v1/calls/{call_id}/transfer", json={"to": "9002", "context": "sim"}, timeout=15
    )
    assert moved.status_code == 202, moved.text
    channel = moved.json()["channel"]
    got = lifecycle.ended(call_id)  # 9002 answers, waits 5 s and hangs up
    [transferred] = [b for b in got if b["type"] == "call.transferred"]
    assert {k: transferred[k] for k in ("transfer", "channel", "target", "target_context")} == {
        "transfer": "redirect",
        "channel": channel,
        "target": "9002",
        "target_context": "sim",
    }
    ended = got[-1]
    assert [(t["transfer"], t["channel"], t["target"]) for t in ended["transfers"]] == [("redirect", channel, "9002")]
    assert ended["result"] == "answered", ended
