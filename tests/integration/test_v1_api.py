"""``/v1``, live events, readiness and metrics against the real test Asterisk.

Calls ring the real SIP phone 8001 (baresip, auto-answer); 9001-9003 answer
and wait 5 s, 9999 answers and waits 600 s (so these tests hang up what they
place), 8002 and 8003 never register. Each test hangs up only its own calls.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testpbx import pbx
from tests.amiwatch import AMIRecorder, EventWatch
from tests.conftest import SalaraFactory, SalaraProcess

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout_s: float = 15) -> T:
    """The first truthy result of ``check()``; AssertionError after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class V1:
    """A salara process and the calls a test placed through it (hung up at the end)."""

    def __init__(self, salara: SalaraProcess) -> None:
        self.salara = salara
        self.url = salara.url
        self.placed: list[str] = []

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=15, headers=self.salara.headers, **kw)

    def post(self, path: str, body: object, **kw: Any) -> httpx.Response:
        headers = {**self.salara.headers, **kw.pop("headers", {})}
        return httpx.post(self.url + path, json=body, timeout=15, headers=headers, **kw)

    def delete(self, path: str) -> httpx.Response:
        return httpx.delete(self.url + path, timeout=15, headers=self.salara.headers)

    def place(self, body: dict[str, object], **kw: Any) -> httpx.Response:
        response = self.post("/v1/calls", body, **kw)
        if response.status_code == 201:
            self.placed.append(response.json()["id"])
        return response

    def call(self, call_id: str) -> dict[str, Any]:
        response = self.get(f"/v1/calls/{call_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_state(self, call_id: str, *states: str, timeout_s: float = 15) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            call = self.call(call_id)
            if call["state"] in states:
                return call
            assert call["state"] != "ended", f"call ended before {states}: {call}"
            return None

        return wait_for(f"call {call_id} in {states}", reached, timeout_s)

    def active_ids(self) -> list[str]:
        return [call["id"] for call in self.get("/v1/calls").json()["calls"]]

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics by name and labels, e.g. ``salara_calls_originated_total``."""
        response = self.get("/metrics")
        assert response.status_code == 200
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def hang_up_all(self) -> None:
        for call_id in self.placed:
            with contextlib.suppress(httpx.HTTPError):
                self.delete(f"/v1/calls/{call_id}")


@pytest.fixture
def v1_factory(salara_factory: SalaraFactory) -> Iterator[Callable[..., V1]]:
    made: list[V1] = []

    def make(**overrides: str) -> V1:
        overrides.setdefault("SALARA_URL_DEST_URL_EVENT", "")  # no CRM: events go to /v1/events only
        api = V1(salara_factory(**overrides))
        made.append(api)
        return api

    yield make
    for api in made:
        api.hang_up_all()


@pytest.fixture
def v1(v1_factory: Callable[..., V1]) -> V1:
    return v1_factory()


def phone_idle() -> bool:
    try:
        reply = pbx.ami_command("Action: ExtensionState", "Exten: 8001", "Context: phones")
    except (OSError, ConnectionError):  # Asterisk restarting (another test's core restart)
        return False
    return "\r\nStatus: 0\r\n" in reply


@pytest.fixture(autouse=True)
def phone_is_free(asterisk: None) -> None:
    """Calls ring phone 8001: wait until an earlier test's call has left it."""
    wait_for("phone 8001 idle", phone_idle, 20)


def test_a_call_is_listed_while_it_lives_hung_up_and_then_reports_its_outcome(v1: V1) -> None:
    body = {
        "from": "8001",
        "to": "9999",
        "context": "phones",
        "caller_id_name": "ACME CRM",
        "variables": {"CRM_ID": "42"},
    }
    response = v1.place(body)
    assert response.status_code == 201, response.text
    call = response.json()
    call_id = call["id"]
    assert response.headers["location"] == f"/v1/calls/{call_id}"
    assert call["from"] == "8001" and call["to"] == "9999" and call["placed_by_salara"] is True
    assert call["state"] in ("dialing", "ringing", "up")
    wait_for("the call in GET /v1/calls", lambda: call_id in v1.active_ids())
    live = v1.wait_state(call_id, "up")
    [channel] = live["channels"]
    assert channel["name"].startswith("PJSIP/8001-") and channel["uniqueid"] == call_id
    assert channel["caller_name"] == "ACME CRM"
    # The channel is there for GET /v1/channels too, with the variable set on it.
    status = v1.get(f"/v1/channels/{channel['name']}").json()
    assert status["linkedid"] == call_id and status["state"] == "Up" and status["application"] == "Wait"
    assert pbx.ami_command("Action: Getvar", f"Channel: {channel['name']}", "Variable: CRM_ID").count("Value: 42") == 1

    assert v1.delete(f"/v1/calls/{call_id}").status_code == 204
    ended = v1.wait_state(call_id, "ended")
    assert call_id not in v1.active_ids()
    assert ended["channels"] == [] and ended["ended_at"] is not None and ended["answered_at"] is not None
    outcome = ended["outcome"]
    assert outcome["result"] == "answered"
    assert outcome["originate_reason"] == 4
    assert (outcome["hangup_cause"], outcome["hangup_cause_text"]) == (16, "Normal Clearing")
    again = v1.delete(f"/v1/calls/{call_id}")
    assert again.status_code == 409 and again.json()["error"] == "call_ended"


def test_a_call_placed_through_the_compat_api_is_a_call_resource_too(v1: V1) -> None:
    answer = v1.post("/", {"operator": "8001", "phone": "9999"})
    assert answer.json() == {"result": 0, "text": "Idle"}
    call = wait_for(
        "the compat call in GET /v1/calls",
        lambda: next((c for c in v1.get("/v1/calls").json()["calls"] if c["placed_by_salara"]), None),
    )
    v1.placed.append(call["id"])
    assert (call["from"], call["to"], call["context"]) == ("8001", "9999", "phones")
    assert call["id"].startswith("salara-")
    # Hung up before the phone answers, the call would rightly end as failed: wait for it to be up.
    v1.wait_state(call["id"], "up")
    assert v1.delete(f"/v1/calls/{call['id']}").status_code == 204
    assert v1.wait_state(call["id"], "ended")["outcome"]["result"] == "answered"


def test_an_originate_to_an_unregistered_endpoint_reports_asterisks_reason(
    v1_factory: Callable[..., V1], ami_recorder: AMIRecorder
) -> None:
    # 8002 never registers: its state is Unavailable (4). Let that count as good so the Originate is sent.
    v1 = v1_factory(SALARA_URL_GOOD_STATUS="0,4", SALARA_AMI_PORT=str(ami_recorder.port))
    response = v1.place({"from": "8002", "to": "9001", "context": "phones"})
    assert response.status_code == 201, response.text
    call_id = response.json()["id"]
    ended = v1.wait_state(call_id, "ended", timeout_s=10)
    outcome = ended["outcome"]
    assert outcome["result"] == "failed"
    assert outcome["originate_reason"] == 0
    assert "OriginateResponse Failure, Reason 0" in outcome["reason"]
    assert outcome["operator"]["result"] == "failed"
    assert ended["answered_at"] is None and ended["channels"] == []
    assert ami_recorder.actions().count("Originate") == 1


def test_a_call_that_rings_unanswered_reports_no_answer_although_the_operator_answered(v1: V1) -> None:
    # 9998 rings (Ringing(), Wait(60)) on the operator's channel and never answers.
    response = v1.place({"from": "8001", "to": "9998", "context": "phones"})
    assert response.status_code == 201, response.text
    call_id = response.json()["id"]
    ringing = wait_for(
        "8001 answered", lambda: (c := v1.call(call_id))["channels"] and c["channels"][0]["state"] == "Up" and c
    )
    assert ringing["state"] == "ringing" and ringing["answered_at"] is None  # only the operator has answered
    time.sleep(3)
    hung_up = v1.delete(f"/v1/calls/{call_id}")
    # (409 call_ended: the shared phone hung up first, e.g. for another test; the outcome is the same)
    assert hung_up.status_code == 204 or hung_up.json()["error"] == "call_ended", hung_up.text
    ended = v1.call(call_id) if hung_up.status_code == 409 else v1.wait_state(call_id, "ended")
    outcome = ended["outcome"]
    assert outcome["result"] == "no_answer", outcome
    assert ended["answered_at"] is None
    assert outcome["operator"]["result"] == "answered" and outcome["operator"]["originate_reason"] == 4
    assert outcome["hangup_cause"] == 16


def test_a_call_to_an_unregistered_endpoint_fails_although_the_operator_answered(v1: V1) -> None:
    # 8002 is in context phones with Dial(PJSIP/8002,20), and never registers.
    response = v1.place({"from": "8001", "to": "8002", "context": "phones"})
    assert response.status_code == 201, response.text
    call_id = response.json()["id"]
    ended = v1.wait_state(call_id, "ended", timeout_s=20)
    outcome = ended["outcome"]
    assert outcome["result"] == "failed", outcome
    assert outcome["dial_status"] == "CHANUNAVAIL"
    assert (outcome["hangup_cause"], outcome["hangup_cause_text"]) == (3, "No route to destination")
    assert outcome["operator"]["result"] == "answered" and outcome["operator"]["originate_reason"] == 4
    assert "Dial CHANUNAVAIL" in outcome["reason"] and ended["answered_at"] is None


def test_an_unavailable_operator_is_refused_with_409_and_nothing_is_placed(
    v1_factory: Callable[..., V1], ami_recorder: AMIRecorder
) -> None:
    v1 = v1_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    response = v1.place({"from": "8003", "to": "9001", "context": "phones"})
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "operator_unavailable" and body["details"]["state_text"] == "Unavailable"
    response = v1.place({"from": "8001", "to": "7777", "context": "sim"})  # 8001 has no hint in sim
    assert response.status_code == 409
    time.sleep(0.3)
    assert "Originate" not in ami_recorder.actions()


def test_the_same_idempotency_key_places_one_call(
    v1_factory: Callable[..., V1], ami_recorder: AMIRecorder, ami_events: EventWatch
) -> None:
    v1 = v1_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    body = {"from": "8001", "to": "9001", "context": "phones"}
    key = {"Idempotency-Key": f"crm-click-{time.time_ns()}"}
    with ThreadPoolExecutor(4) as pool:  # a double click, and then some
        responses = list(pool.map(lambda _: v1.place(body, headers=key), range(4)))
    responses.append(v1.place(body, headers=key))
    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    [call_id] = ids
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
    assert ami_recorder.actions().count("Originate") == 1
    ami_events.wait_for(lambda e: e.get("Event") == "Newchannel" and e.get("Linkedid") == call_id)
    time.sleep(0.5)
    phones = [
        e
        for e in ami_events.snapshot()
        if e.get("Event") == "Newchannel" and e.get("Channel", "").startswith("PJSIP/8001-")
    ]
    assert [e["Linkedid"] for e in phones] == [call_id]
    # The same key with another request is refused, not placed.
    other = v1.place({**body, "to": "9002"}, headers=key)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    assert ami_recorder.actions().count("Originate") == 1
    v1.wait_state(call_id, "ended", timeout_s=15)  # 9001 hangs up after 5 s


class EventStream:
    """A ``GET /v1/events`` client in a thread, collecting parsed Server-Sent Events."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: list[dict[str, str]] = []
        self.connected = threading.Event()
        self._stop = False
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the event stream did not open"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with contextlib.suppress(httpx.HTTPError):  # salara stopped at the end of the test
            self._read(url, headers)

    def _read(self, url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=30)) as response:
            self._response = response
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            current: dict[str, str] = {}
            for line in response.iter_lines():
                self.connected.set()
                if self._stop:
                    return
                if not line:
                    if "data" in current:
                        self.events.append(current)
                    current = {}
                    continue
                key, _, value = line.partition(": ")
                if not line.startswith(":"):
                    current[key] = value

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout_s: float = 15) -> dict[str, str]:
        return wait_for("a live event", lambda: next((e for e in list(self.events) if predicate(e)), None), timeout_s)

    def close(self) -> None:
        self._stop = True
        if self._response is not None:
            with contextlib.suppress(Exception):  # the reader thread may be inside it
                self._response.close()
        self._thread.join(2)


def test_live_events_deliver_the_events_of_a_call_placed_during_the_test(v1: V1) -> None:
    stream = EventStream(f"{v1.url}/v1/events?type=Newchannel,Hangup", v1.salara.headers)
    try:
        response = v1.place({"from": "8001", "to": "9001", "context": "phones"})
        assert response.status_code == 201
        call_id = response.json()["id"]
        hangup = stream.wait_for(lambda e: e.get("event") == "Hangup" and call_id in e.get("data", ""), 20)
        mine = [e for e in stream.events if json.loads(e["data"]).get("linkedid") == call_id]
        assert [e["event"] for e in mine] == ["Newchannel", "Hangup"]  # Newexten filtered out
        data = json.loads(hangup["data"])
        assert data["event"] == "Hangup" and data["chan"].startswith("PJSIP/8001-")
        assert (data["caller"], data["exten"]) == ("8001", "9001")  # the tracked call's parties
        assert data["id"] == hangup["id"] and data["tracked"] is True
        assert len({e["id"] for e in mine}) == 2
    finally:
        stream.close()


def test_metrics_parse_and_move_when_calls_are_placed(v1: V1) -> None:
    before = v1.metrics()
    assert before["salara_ami_up{pbx=default}"] == 1
    response = v1.place({"from": "8001", "to": "9999", "context": "phones"})
    assert response.status_code == 201
    call_id = response.json()["id"]
    v1.wait_state(call_id, "up")
    during = v1.metrics()
    assert during["salara_calls_active"] >= 1
    v1.delete(f"/v1/calls/{call_id}")
    v1.wait_state(call_id, "ended")
    after = v1.metrics()

    def moved(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert moved("salara_calls_originated_total") == 1
    assert moved("salara_calls_ended_total{outcome=answered}") == 1
    assert moved("salara_ami_action_seconds_count{action=Originate}") == 1
    assert moved("salara_ami_action_seconds_count{action=Hangup}") == 1
    assert moved("salara_ami_events_total{event=Newchannel}") >= 1
    assert moved("salara_ami_events_total{event=Hangup}") >= 1
    assert moved("salara_api_requests_total{method=POST,route=/v1/calls,status=201}") == 1
    assert moved("salara_api_requests_total{method=DELETE,route=/v1/calls/{call_id},status=204}") == 1
    assert moved("salara_events_emitted_total") >= 2  # Newchannel and Hangup of the tracked call
    assert after["salara_ami_logins_total{pbx=default}"] >= 1


def test_transfer_redirects_the_call_elsewhere(v1: V1, ami_events: EventWatch) -> None:
    response = v1.place({"from": "8001", "to": "9999", "context": "phones"})
    call_id = response.json()["id"]
    live = v1.wait_state(call_id, "up")
    channel = live["channels"][0]["name"]
    moved = v1.post(f"/v1/calls/{call_id}/transfer", {"to": "9002", "context": "sim"})
    assert moved.status_code == 202, moved.text
    assert moved.json() == {"id": call_id, "channel": channel, "to": "9002", "context": "sim"}
    ami_events.wait_for(
        lambda e: (
            e.get("Event") == "Newexten"
            and e.get("Channel") == channel
            and e.get("Context") == "sim"
            and e.get("Exten") == "9002"
        )
    )
    bad = v1.post(f"/v1/calls/{call_id}/transfer", {"to": "9002", "channel": "PJSIP/8003-00000001"})
    assert bad.status_code == 404 and bad.json()["error"] == "channel_not_found"
    assert v1.post("/v1/calls/nosuch/transfer", {"to": "9002"}).status_code == 404


def test_states_of_extensions_endpoints_and_channels(v1: V1) -> None:
    pbx.ami_command("Action: Setvar", "Variable: DEVICE_STATE(Custom:9003)", "Value: INUSE")
    try:
        # Answered from Asterisk's ExtensionStatus events once read: they follow the change by a fraction of a ms.
        state = wait_for(
            "9003 in use",
            lambda: (got := v1.get("/v1/extensions/9003", params={"context": "sim"}).json())["state"] == 1 and got,
        )
        assert state == {
            "exten": "9003",
            "context": "sim",
            "pbx": "default",
            "hint": "Custom:9003",
            "state": 1,
            "state_text": "InUse",
            "available": False,
        }
    finally:
        pbx.ami_command("Action: Setvar", "Variable: DEVICE_STATE(Custom:9003)", "Value: NOT_INUSE")
    assert v1.get("/v1/extensions/7777").status_code == 404
    phone = wait_for("8001 reachable", lambda: (e := v1.get("/v1/endpoints/8001").json())["rtt_ms"] and e)
    assert phone["registered"] is True and phone["reachability"] == "reachable"
    assert phone["device_state"] == "Not in use"
    [contact] = phone["contacts"]
    assert contact["user_agent"].startswith("baresip") and contact["uri"].startswith("sip:8001")
    assert "pass8001" not in json.dumps(phone)  # PJSIPShowEndpoint carries the password: never shown
    unregistered = v1.get("/v1/endpoints/8002").json()
    assert (unregistered["registered"], unregistered["reachability"], unregistered["contacts"]) == (
        False,
        "unknown",
        [],
    )
    assert v1.get("/v1/endpoints/nosuchendpoint").json()["error"] == "not_found"
    assert v1.get("/v1/channels/PJSIP/8003-00000020").status_code == 404


def test_messages_report_whether_asterisk_accepted_them(v1: V1) -> None:
    sent = v1.post("/v1/messages", {"to": "8001", "from": "8002", "text": f"hello {time.time_ns()}"})
    assert sent.status_code == 200 and sent.json() == {"accepted": True, "reason": None}
    refused = v1.post("/v1/messages", {"to": "8003", "from": "8002", "text": "hello"})
    assert refused.status_code == 409 and refused.json()["error"] == "operator_unavailable"


def test_calls_are_resynchronised_after_an_ami_reconnect(
    v1_factory: Callable[..., V1], ami_recorder: AMIRecorder
) -> None:
    v1 = v1_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    tag = f"resync-{time.time_ns()}"

    def originate(channel_id: str) -> None:
        reply = pbx.ami_command(
            "Action: Originate",
            "Channel: Local/9999@sim",
            "Application: Wait",
            "Data: 60",
            "Async: true",
            f"ChannelId: {channel_id}",
            f"OtherChannelId: {channel_id}-2",
        )
        assert "Success" in reply

    def hang_up(call_id: str) -> None:
        pbx.ami_command("Action: Hangup", f"Channel: {call_id}")  # Hangup takes a Uniqueid too

    originate(f"{tag}-a")
    try:
        wait_for("call a listed", lambda: f"{tag}-a" in v1.active_ids())
        ami_recorder.refusing = True
        ami_recorder.cut()  # salara loses AMI; meanwhile call a ends and call b starts
        wait_for("salara unready", lambda: v1.get("/v1/calls").status_code == 503, 5)
        hang_up(f"{tag}-a")
        originate(f"{tag}-b")
        time.sleep(0.5)  # salara sees neither the Hangup of a nor the Newchannel of b
        ami_recorder.refusing = False
        wait_for("salara back", lambda: v1.get("/v1/calls").status_code == 200, 20)
        active = wait_for("call b listed", lambda: (ids := v1.active_ids()) and f"{tag}-b" in ids and ids)
        assert f"{tag}-a" not in active
        gone = v1.call(f"{tag}-a")
        assert gone["state"] == "ended" and gone["outcome"]["result"] == "answered"
        assert v1.call(f"{tag}-b")["channels"][0]["name"].startswith("Local/9999@sim-")
    finally:
        ami_recorder.refusing = False
        hang_up(f"{tag}-a")
        hang_up(f"{tag}-b")


def test_ready_turns_unready_while_asterisk_restarts_and_ready_after(v1: V1) -> None:
    seen: list[int] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            try:
                seen.append(v1.get("/ready").status_code)
            except httpx.HTTPError:
                seen.append(-1)
            time.sleep(0.05)

    logins = v1.metrics()["salara_ami_logins_total{pbx=default}"]
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        with contextlib.suppress(ConnectionError, OSError):  # Asterisk may close before answering
            pbx.ami_command("Action: Command", "Command: core restart now")
        wait_for("/ready unready", lambda: 503 in seen, 15)
        assert v1.get("/v1/calls").status_code == 503  # nothing is answered from a stale view
        wait_for("/ready ready again", lambda: seen[-1] == 200 and 503 in seen, 40)
    finally:
        stop.set()
        prober.join(2)
        pbx.after_boot()
        pbx.start_phone()  # the phone re-registers after the restart
    first_unready = seen.index(503)
    assert 200 in seen[first_unready:]
    after = v1.metrics()
    assert after["salara_ami_up{pbx=default}"] == 1
    assert after["salara_ami_logins_total{pbx=default}"] >= logins + 1
    assert after["salara_ami_disconnects_total{pbx=default}"] >= 1


def test_tokens_and_rights_apply_to_v1_before_any_ami_action(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    from tests.integration.test_security import Tokens, bearer, new_actions, start_secured

    tokens = Tokens()  # crm: call/message/state in phones to 3-4 digits; monitor: state; ops: admin, state
    salara = start_secured(salara_factory, ami_recorder, tokens)
    url = salara.url
    call = {"from": "8001", "to": "9001", "context": "phones"}
    before = len(ami_recorder.actions())
    assert httpx.get(f"{url}/v1/calls").status_code == 401
    assert httpx.get(f"{url}/v1/calls", headers=bearer("wrong")).status_code == 401
    assert httpx.get(f"{url}/metrics").status_code == 401
    monitor = bearer(tokens.monitor)
    assert httpx.get(f"{url}/v1/calls", headers=monitor).status_code == 200
    assert httpx.get(f"{url}/metrics", headers=monitor).status_code == 200
    for method, path, body in (
        ("POST", "/v1/calls", call),
        ("POST", "/v1/messages", {"to": "8001", "from": "8002", "text": "hi"}),
        ("DELETE", "/v1/calls/somecall", None),
        ("POST", "/v1/calls/somecall/transfer", {"to": "9002"}),
    ):
        refused = httpx.request(method, f"{url}{path}", json=body, headers=monitor)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"] == "forbidden"
    crm = bearer(tokens.crm)
    for body in ({**call, "to": "+4930123456"}, {**call, "context": "sim"}):
        refused = httpx.post(f"{url}/v1/calls", json=body, headers=crm)
        assert refused.status_code == 403, refused.text
    # Nothing of the above reached Asterisk (the resync after login may be recorded late: not a request's).
    assert [a for a in new_actions(ami_recorder, before) if a != "CoreShowChannels"] == []
    assert httpx.get(f"{url}/v1/extensions/8001", headers=crm).json()["state_text"] == "Idle"


def test_idempotent_replays_do_not_spend_the_tokens_rate(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    from tests.integration.test_security import Tokens, bearer, start_secured

    tokens = Tokens()  # crm: calls in phones to 3-4 digit numbers
    salara = start_secured(salara_factory, ami_recorder, tokens, crm_rate="5/60")
    crm = bearer(tokens.crm)
    body = {"from": "8001", "to": "9001", "context": "phones"}
    key = {"Idempotency-Key": f"crm-click-{time.time_ns()}", **crm}
    answers = [httpx.post(f"{salara.url}/v1/calls", json=body, headers=key, timeout=15) for _ in range(7)]
    assert [a.status_code for a in answers] == [201] * 7, answers[-1].text
    call_id = answers[0].json()["id"]
    assert {a.json()["id"] for a in answers} == {call_id}
    try:
        assert ami_recorder.actions().count("Originate") == 1
        # Four of the five remain: an operator that is not available costs a call each (8003: Unavailable).
        other = {"from": "8003", "to": "9001", "context": "phones"}
        statuses = [httpx.post(f"{salara.url}/v1/calls", json=other, headers=crm).status_code for _ in range(5)]
        assert statuses == [409, 409, 409, 409, 429]
    finally:
        httpx.delete(f"{salara.url}/v1/calls/{call_id}", headers=crm)


def test_one_token_cannot_hold_every_live_stream(salara_factory: SalaraFactory, ami_recorder: AMIRecorder) -> None:
    from tests.integration.test_security import Tokens, start_secured

    tokens = Tokens()
    salara = start_secured(salara_factory, ami_recorder, tokens)

    def open_stream(token: str) -> tuple[socket.socket, bytes]:
        sock = socket.create_connection(("127.0.0.1", salara.port))
        request = f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        sock.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
        if not head.startswith(b"HTTP/1.1 200 "):  # an error: its body follows, then the end
            with contextlib.suppress(OSError):
                while chunk := sock.recv(4096):
                    head += chunk
        return sock, head

    streams = [open_stream(tokens.monitor) for _ in range(8)]
    try:
        assert all(head.startswith(b"HTTP/1.1 200 ") for _, head in streams)
        refused, head = open_stream(tokens.monitor)
        refused.close()
        assert head.startswith(b"HTTP/1.1 503 ") and b"too_many_subscribers" in head
        theirs, head = open_stream(tokens.ops)  # another token still gets its stream
        theirs.close()
        assert head.startswith(b"HTTP/1.1 200 ")
    finally:
        for sock, _ in streams:
            sock.close()


def test_v1_itself_is_reserved(v1: V1) -> None:
    for method in ("GET", "POST"):
        response = httpx.request(method, f"{v1.url}/v1", json={"exten": "9001"}, headers=v1.salara.headers)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
