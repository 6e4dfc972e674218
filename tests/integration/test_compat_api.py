"""The compat API against the real test Asterisk (SPEC §1)."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import pytest

from testpbx import pbx
from tests.amiwatch import AMIRecorder, EventWatch
from tests.conftest import SalaraFactory, SalaraProcess


def set_device_state(device: str, state: str) -> None:
    reply = pbx.ami_command("Action: Setvar", f"Variable: DEVICE_STATE({device})", f"Value: {state}")
    assert "Success" in reply


@pytest.fixture
def salara(salara_factory: SalaraFactory) -> SalaraProcess:
    return salara_factory()


def answered(salara: SalaraProcess, body: dict[str, object], expected: dict[str, object]) -> dict[str, object]:
    """What salara answers ``body`` once the state Asterisk announces has reached it (within 5 s).

    A hint read once is answered from Asterisk's ``ExtensionStatus`` events,
    which follow a change made on another AMI session by a fraction of a
    millisecond: a request sent at once may still see the state before.
    """
    deadline = time.monotonic() + 5
    while (got := salara.post(body).json()) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return dict(got)


def test_extension_state_follows_the_hint(salara: SalaraProcess) -> None:
    set_device_state("Custom:9001", "NOT_INUSE")
    assert answered(salara, {"exten": "9001"}, idle := {"result": 0, "text": "Idle"}) == idle
    set_device_state("Custom:9001", "INUSE")
    assert answered(salara, {"exten": "9001"}, in_use := {"result": 1, "text": "InUse"}) == in_use
    set_device_state("Custom:9001", "RINGING")
    assert answered(salara, {"exten": 9001}, ringing := {"result": 8, "text": "Ringing"}) == ringing
    set_device_state("Custom:9001", "NOT_INUSE")
    assert salara.post({"exten": "7777"}).json() == {"result": -1, "text": "Unknown"}


def test_context_is_taken_from_the_request(salara: SalaraProcess) -> None:
    set_device_state("Custom:9003", "BUSY")
    busy = {"result": 2, "text": "Busy"}
    assert answered(salara, {"exten": "9003", "context": "sim"}, busy) == busy
    # 8001's hint lives in "phones" only: in "sim" there is no such extension.
    assert salara.post({"exten": "8001", "context": "sim"}).json() == {"result": -1, "text": "Unknown"}
    set_device_state("Custom:9003", "NOT_INUSE")


def test_get_query_and_form_post_answer_like_json(salara: SalaraProcess) -> None:
    set_device_state("Custom:9002", "INUSE")
    expected = {"result": 1, "text": "InUse"}
    assert answered(salara, {"exten": "9002"}, expected) == expected
    assert httpx.get(salara.url + "/?exten=9002").json() == expected
    assert httpx.get(salara.url + "/any/path?exten=9002").json() == expected
    form = httpx.post(salara.url + "/", data={"exten": "9002"})
    assert form.headers["content-type"] == "application/json"
    assert form.json() == expected
    # A JSON body sent without a JSON content type, as old CRMs do.
    raw = httpx.post(salara.url + "/", content=b'{"exten":"9002"}', headers={"content-type": "text/plain"})
    assert raw.json() == expected
    set_device_state("Custom:9002", "NOT_INUSE")


def test_make_call_rings_the_operator_then_dials_the_phone(salara: SalaraProcess, ami_events: EventWatch) -> None:
    answer = salara.post({"operator": "8001", "phone": "9002"})
    assert answer.json() == {"result": 0, "text": "Idle"}
    # The phone (PJSIP/8001) answers, then 9002 runs in the context.
    answered = ami_events.wait_for(
        lambda e: (
            e.get("Event") == "Newstate"
            and e.get("Channel", "").startswith("PJSIP/8001-")
            and e.get("ChannelStateDesc") == "Up"
        )
    )
    dialled = ami_events.wait_for(
        lambda e: (
            e.get("Event") == "Newexten"
            and e.get("Channel") == answered["Channel"]
            and e.get("Exten") == "9002"
            and e.get("Context") == "phones"
        )
    )
    assert dialled["Linkedid"] == answered["Linkedid"]
    response = ami_events.wait_for(lambda e: e.get("Event") == "OriginateResponse")
    assert response["Response"] == "Success"
    assert response["Channel"].startswith("PJSIP/8001")
    pbx.hangup_all()


def test_make_call_to_an_unavailable_operator_is_not_placed(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder, ami_events: EventWatch
) -> None:
    salara = salara_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    answer = salara.post({"operator": "8002", "phone": "9002"})  # 8002 never registers
    assert answer.json() == {"result": 4, "text": "Unavailable"}
    time.sleep(0.5)
    assert "ExtensionState" in ami_recorder.actions()
    assert "Originate" not in ami_recorder.actions()
    assert not [e for e in ami_events.snapshot() if e.get("Event") == "Newchannel"]


def test_channel_state_of_a_live_channel(salara: SalaraProcess, ami_events: EventWatch) -> None:
    reply = pbx.ami_command(
        "Action: Originate", "Channel: Local/9999@sim", "Application: Wait", "Data: 30", "Async: true"
    )
    assert "Success" in reply
    up = ami_events.wait_for(
        lambda e: (
            e.get("Event") == "Newstate"
            and e.get("Channel", "").startswith("Local/9999@sim-")
            and e.get("ChannelStateDesc") == "Up"
        )
    )
    assert salara.post({"chan": up["Channel"]}).json() == {"result": 0, "text": "Up (6)"}
    pbx.hangup_all()
    gone = {"result": -1, "text": "Channel not present"}
    assert salara.post({"chan": up["Channel"]}).json() == gone
    assert salara.post({"chan": "PJSIP/8003-00000020"}).json() == gone


def test_peer_state(salara: SalaraProcess) -> None:
    deadline = time.monotonic() + 15
    while True:  # the first qualify of the phone may still be under way
        answer = salara.post({"peer": "8001"}).json()
        if answer["text"] == "Reachable" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer == {"result": 0, "text": "Reachable"}
    assert salara.post({"peer": "8002"}).json() == {"result": 0, "text": "Unknown"}
    assert salara.post({"peer": "nosuchpeer"}).json() == {"result": -1, "text": "Error"}


def sip_log() -> str:
    path = pbx.ROOT / "var/log/asterisk/messages.log"
    return path.read_text(errors="replace") if path.exists() else ""


def sip_blocks() -> list[str]:
    """The SIP messages pjsip's logger wrote, one string each."""
    return sip_log().split("res_pjsip_logger.c: ")[1:]


def test_message_reaches_the_phone(salara: SalaraProcess) -> None:
    pbx.cli("pjsip set logger on")
    try:
        body = f"hello from the CRM {time.time_ns()}"
        answer = salara.post({"operator": "8001", "phone": "8002", "msg": body})
        assert answer.json() == {"result": 0, "text": "Idle"}
        deadline = time.monotonic() + 5
        ok = None
        while ok is None and time.monotonic() < deadline:
            blocks = sip_blocks()
            sent = [b for b in blocks if "\nMESSAGE sip:8001" in b and body in b]
            if sent:
                call_id = sent[0].split("Call-ID: ", 1)[1].split("\n", 1)[0].strip()
                ok = next((b for b in blocks if "SIP/2.0 200 OK" in b and f"Call-ID: {call_id}" in b), None)
            time.sleep(0.1)
        assert sent, "the MESSAGE never left Asterisk"
        assert 'From: "8002" <sip:8002@' in sent[0]
        assert ok is not None, "the phone did not answer 200 OK"
    finally:
        pbx.cli("pjsip set logger off")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"exten": "9001"', "application/json"),  # bad JSON
        (b"[1, 2]", "application/json"),  # not an object
        (b'{"foo": "bar"}', "application/json"),  # unknown request
        (b'{"exten": "90\\r\\n01"}', "application/json"),  # CR LF in a value
        (b'{"exten": "9001\\nAction: Originate"}', "application/json"),  # injection attempt
        (b'{"operator": "8001", "phone": "9002", "context": "a\\rb"}', "application/json"),
        (b'{"exten": {"nested": 1}}', "application/json"),
        (b'{"exten": "9001", "context": "x y"}', "application/json"),
        (b"exten=90%0D%0A01", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/json"),
    ],
)
def test_bad_requests_get_4xx_and_never_reach_ami(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder, body: bytes, content_type: str
) -> None:
    salara = salara_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    before = ami_recorder.actions()
    response = httpx.post(salara.url + "/", content=body, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500
    answer = response.json()
    assert answer["result"] == -2 and answer["text"].startswith("Error: ")
    assert [a for a in ami_recorder.actions()[len(before) :] if a != "Ping"] == []


def test_injection_in_the_query_string_is_refused(salara: SalaraProcess) -> None:
    response = httpx.get(salara.url + "/?exten=9001%0D%0AAction:%20Originate")
    assert response.status_code == 400


def test_ami_down_answers_503_promptly(salara_factory: SalaraFactory) -> None:
    from tests.conftest import free_port

    salara = salara_factory(start=False, SALARA_AMI_PORT=str(free_port()))
    salara.start(wait_ready=False)
    started = time.monotonic()
    response = salara.post({"exten": "9001"})
    assert response.status_code == 503
    assert response.json()["result"] == -2
    assert time.monotonic() - started < 5
    assert httpx.get(salara.url + "/ready").status_code == 503


def test_core_restart_reconnects_and_answers_again(salara: SalaraProcess) -> None:
    assert salara.post({"exten": "9001"}).status_code == 200
    with contextlib.suppress(ConnectionError):  # Asterisk may close before answering
        pbx.ami_command("Action: Command", "Command: core restart now")
    # AMI goes away, then comes back; measure from when it accepts logins again.
    deadline = time.monotonic() + 30
    while pbx.ami_ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    while not pbx.ami_ready():
        assert time.monotonic() < deadline, "Asterisk did not come back"
        time.sleep(0.05)
    back = time.monotonic()
    while True:
        try:
            response = salara.post({"exten": "9001"})
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            break
        assert time.monotonic() - back < 5, f"salara did not answer within 5 s:\n{salara.log()}"
        time.sleep(0.1)
    assert response.json()["text"] in ("Idle", "InUse", "Unavailable")
    pbx.after_boot()
    pbx.start_phone()  # the phone re-registers after the restart


def test_other_methods_and_odd_paths_answer_in_the_compat_shape(salara: SalaraProcess) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        response = httpx.request(method, salara.url + "/", json={"exten": "9001"})
        assert response.status_code == 405
        assert response.json() == {"result": -2, "text": "Error: Method Not Allowed"}
    odd = httpx.get(salara.url + "/a%0d%0ab?exten=9001")
    assert 400 <= odd.status_code < 500 and odd.json()["result"] == -2


def test_a_burst_of_identical_state_queries_shares_ami_round_trips(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    import asyncio

    salara = salara_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    before = ami_recorder.actions().count("ExtensionState")

    async def burst() -> list[dict[str, object]]:
        async with httpx.AsyncClient(base_url=salara.url) as client:
            answers = await asyncio.gather(*(client.post("/", json={"exten": "9001"}) for _ in range(40)))
        return [answer.json() for answer in answers]

    set_device_state("Custom:9001", "NOT_INUSE")
    assert asyncio.run(burst()) == [{"result": 0, "text": "Idle"}] * 40
    sent = ami_recorder.actions().count("ExtensionState") - before
    assert 1 <= sent < 40


def test_a_hint_read_once_follows_its_events_without_more_round_trips(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    salara = salara_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    set_device_state("Custom:9002", "NOT_INUSE")
    idle, in_use = {"result": 0, "text": "Idle"}, {"result": 1, "text": "InUse"}
    assert answered(salara, {"exten": "9002"}, idle) == idle
    before = ami_recorder.actions().count("ExtensionState")
    answers = [salara.post({"exten": "9002"}).json() for _ in range(20)]
    set_device_state("Custom:9002", "INUSE")
    assert answered(salara, {"exten": "9002"}, in_use) == in_use
    # Reached through "phones" (which includes "sim"): its events name "sim", the hint is the same.
    assert answered(salara, {"exten": "9002", "context": "sim"}, in_use) == in_use
    set_device_state("Custom:9002", "NOT_INUSE")
    assert answered(salara, {"exten": "9002"}, idle) == idle
    sent = ami_recorder.actions().count("ExtensionState") - before
    assert answers == [idle] * 20
    assert sent <= 2, f"{sent} ExtensionState actions for 9002 (at most 2: one per context, and a 5 s renewal)"
    # An extension without a hint is asked every time (a hint added later is seen at once).
    before = ami_recorder.actions().count("ExtensionState")
    assert [salara.post({"exten": "7777"}).json()["result"] for _ in range(3)] == [-1] * 3
    assert ami_recorder.actions().count("ExtensionState") - before == 3


def _exchange(port: int, data: bytes, timeout_s: float = 5) -> bytes:
    """Send ``data`` on one new connection and read until salara closes it (or ``timeout_s``)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(TimeoutError):
            while time.monotonic() < deadline and (chunk := sock.recv(65536)):
                received += chunk
    return received


def _answers(raw: bytes) -> list[tuple[list[bytes], bytes]]:
    """The HTTP answers in ``raw``: each one's head lines and its body (framed by content-length)."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
        found.append((lines, raw[:length]))
        raw = raw[length:]
    return found


@pytest.mark.parametrize("verbose", ["2", "1"])  # answers made the ASGI way; and in salara's protocol, known at once
def test_answers_on_the_wire_keep_http_s_framing(salara_factory: SalaraFactory, verbose: str) -> None:
    salara = salara_factory(SALARA_EVENT_VERBOSE=verbose)
    set_device_state("Custom:9001", "NOT_INUSE")
    assert answered(salara, {"exten": "9001"}, idle := {"result": 0, "text": "Idle"}) == idle
    body = b'{"exten":"9001"}'
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n" + body
    # Two pipelined requests, then one asking to close: three answers in order, the last one closing.
    last = request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n").replace(b"9001", b"7777")
    answers = _answers(_exchange(salara.port, request + request + last))
    assert [answer[1] for answer in answers] == [
        b'{"result":0,"text":"Idle"}',
        b'{"result":0,"text":"Idle"}',
        b'{"result":-1,"text":"Unknown"}',
    ]
    for lines, payload in answers:
        assert lines[0] == b"HTTP/1.1 200 OK"
        fields = [line.split(b": ", 1)[0] for line in lines[1:]]
        assert fields[:3] == [b"date", b"content-length", b"content-type"]
        assert f"content-length: {len(payload)}".encode() in lines and b"content-type: application/json" in lines
    assert [b"connection: close" in lines for lines, _ in answers] == [False, False, True]
    # HTTP/1.0 without keep-alive: the answer says it closes, and it does.
    [(lines, payload)] = _answers(_exchange(salara.port, request.replace(b"HTTP/1.1", b"HTTP/1.0")))
    assert lines[0] == b"HTTP/1.1 200 OK" and b"connection: close" in lines and payload == b'{"result":0,"text":"Idle"}'
    # An error answer is framed the same way.
    refused = last.replace(b"7777", b"7\\r7")
    [(lines, payload)] = _answers(_exchange(salara.port, refused))
    assert lines[0] == b"HTTP/1.1 400 Bad Request" and b"connection: close" in lines
    assert payload.startswith(b'{"result":-2,"text":"Error: ')


def _compat_requests(salara: SalaraProcess, status: int) -> float:
    """``salara_api_requests_total`` of POSTs to the compat endpoint answered ``status``."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(salara.url + "/metrics", timeout=15, headers=salara.headers).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "salara_api_requests_total" and sample.labels == {
                "method": "POST",
                "route": "/{path:path}",
                "status": str(status),
            }:
                return sample.value
    return 0.0


def test_polls_of_a_followed_hint_on_new_connections_are_answered_and_counted(salara_factory: SalaraFactory) -> None:
    # Without access log lines, answered inside salara's protocol (salara.api.compat.quick): the same answers,
    # the same metrics.
    salara = salara_factory(SALARA_EVENT_VERBOSE="1")
    set_device_state("Custom:9001", "NOT_INUSE")
    idle, in_use = {"result": 0, "text": "Idle"}, {"result": 1, "text": "InUse"}
    assert answered(salara, {"exten": "9001"}, idle) == idle
    before, refused_before = _compat_requests(salara, 200), _compat_requests(salara, 400)
    answers = [salara.post({"exten": "9001"}).json() for _ in range(30)]  # a new connection each
    refused = [salara.post({"exten": "90\r01"}).status_code for _ in range(3)]
    assert answers == [idle] * 30
    assert refused == [400] * 3
    assert _compat_requests(salara, 200) - before == 30
    assert _compat_requests(salara, 400) - refused_before == 3
    set_device_state("Custom:9001", "INUSE")
    assert answered(salara, {"exten": "9001"}, in_use) == in_use
    set_device_state("Custom:9001", "NOT_INUSE")
    assert answered(salara, {"exten": "9001"}, idle) == idle
