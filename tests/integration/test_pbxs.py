"""Several PBXs behind one salara: two real Asterisk instances, one salara process.

Instance a of the test PBX is ``[ami]`` (the ``default`` PBX); instance b is
``[ami branch]``, reached over AMI with TLS (its certificate verified
against the test CA) and serving the dialplan context ``branch``. The CRM is
a real HTTP server (:class:`~tests.crm.FakeCrm`). The later tests are a
review's: b misconfigured, /v1 with ``pbx``, ids, resyncs.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testpbx import pbx
from tests.conftest import SalaraFactory, SalaraProcess
from tests.crm import FakeCrm
from tests.integration.test_events import config_text
from tests.pbxb import PBXB

WRONG_SECRET = "not-b-secret-4711"


@pytest.fixture(autouse=True)
def clean_channels(pbx_b: PBXB) -> Iterator[None]:
    pbx.hangup_all()
    pbx_b.hangup_all()
    yield
    pbx.hangup_all()
    pbx_b.hangup_all()


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm().start()
    yield server
    server.stop()


def branch_config(crm: FakeCrm, b: PBXB, *, agi_allow: str = "") -> str:
    text = config_text(crm, newchannel=2, hangup=2, newexten=0, agentcon=0)
    text = text.replace("\npayload=compat\n", "\npayload=extended\n").replace("\nlifecycle=no\n", "\nlifecycle=yes\n")
    # Local/<from>: on b an operator "device" in its [default] context answers at once (b has no phones).
    text = text.replace("\noperator_technology=PJSIP\n", "\noperator_technology=Local\n")
    if agi_allow:
        text = text.replace("\nallow=\n", f"\nallow={agi_allow}\n")
    return text + (
        f"\n[ami branch]\nhost=127.0.0.1\nport={b.ami_tls_port}\nusername={b.user}\nsecret={b.secret}\n"
        f"tls=yes\ntls_ca={b.ca_file}\ncontexts=branch\n"
    )


@pytest.fixture
def salara(salara_factory: SalaraFactory, crm: FakeCrm, pbx_b: PBXB) -> SalaraProcess:
    return salara_factory(branch_config(crm, pbx_b))


def until(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def originate(b: PBXB | None, channel_id: str, exten: str, context: str, wait_s: int = 1) -> None:
    """A Local channel to ``exten@context`` on b (or on a with ``b`` None) that stays ``wait_s`` seconds."""
    lines = (
        "Action: Originate",
        f"Channel: Local/{exten}@{context}",
        "Application: Wait",
        f"Data: {wait_s}",
        f"Variable: WAITSECS={wait_s}",
        f"ChannelId: {channel_id}",
        "Async: true",
    )
    reply = b.ami_command(*lines) if b is not None else pbx.ami_command(*lines)
    assert "Response: Success" in reply, reply


def crm_events(crm: FakeCrm) -> list[dict[str, Any]]:
    return [record.json() for record in crm.events()]


def test_each_pbxs_calls_reach_the_crm_carrying_their_pbx(salara: SalaraProcess, crm: FakeCrm, pbx_b: PBXB) -> None:
    ready = httpx.get(salara.url + "/ready", timeout=5).json()
    assert {name: p["up"] for name, p in ready["pbxs"].items()} == {"default": True, "branch": True}
    health = httpx.get(salara.url + "/ui/api/health", timeout=5)  # the console's Health view
    assert health.status_code == 200, health.text
    assert [(p["name"], p["ready"], p["port"]) for p in health.json()["pbxs"]] == [("branch", True, pbx_b.ami_tls_port)]
    run = f"pbxs-{time.time_ns()}"
    originate(pbx_b, f"{run}-b", "7001", "branch")
    originate(None, f"{run}-a", "9001", "sim")

    def hangups() -> dict[str, dict[str, Any]] | None:
        found = {e["linkedid"]: e for e in crm_events(crm) if e.get("event") == "Hangup" and run in e["linkedid"]}
        return found if {f"branch:{run}-b", f"{run}-a"} <= found.keys() else None

    ended = until(hangups, 20, "both calls' Hangups at the CRM")
    assert ended[f"branch:{run}-b"]["pbx"] == "branch"
    assert ended[f"branch:{run}-b"]["uniqueid"].startswith("branch:")
    assert ended[f"{run}-a"]["pbx"] == "default"
    mine = [e for e in crm_events(crm) if run in (e.get("linkedid") or e.get("call_id") or "")]
    assert {e["pbx"] for e in mine if e.get("linkedid", "").startswith("branch:")} == {"branch"}
    assert {e["pbx"] for e in mine if e.get("call_id", "").startswith("branch:")} == {"branch"}


def test_a_state_in_a_context_of_the_second_pbx_is_read_there(salara: SalaraProcess, pbx_b: PBXB) -> None:
    pbx_b.ami_command("Action: Setvar", "Variable: DEVICE_STATE(Custom:branch1)", "Value: INUSE")
    try:
        assert until(
            lambda: salara.post({"exten": "7100", "context": "branch"}).json() == {"result": 1, "text": "InUse"},
            5,
            "7100@branch InUse through the compat API",
        )
        view = httpx.get(salara.url + "/v1/extensions/7100", params={"context": "branch"}, timeout=5).json()
        assert (view["pbx"], view["state"], view["hint"]) == ("branch", 1, "Custom:branch1")
        # The default PBX has no such hint: asked there by name, it is not found.
        there = httpx.get(salara.url + "/v1/extensions/7100", params={"context": "branch", "pbx": "default"})
        assert there.status_code == 404
        unknown = httpx.get(salara.url + "/v1/extensions/7100", params={"context": "branch", "pbx": "nowhere"})
        assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_pbx")
    finally:
        pbx_b.ami_command("Action: Setvar", "Variable: DEVICE_STATE(Custom:branch1)", "Value: NOT_INUSE")


def test_a_call_placed_with_pbx_goes_to_that_pbx(salara: SalaraProcess, crm: FakeCrm, pbx_b: PBXB) -> None:
    body = {"from": "7100", "to": "7001", "context": "branch", "pbx": "branch", "variables": {"CRM_WAITSECS": "1"}}
    both = httpx.post(salara.url + "/v1/calls", params={"pbx": "default"}, json=body, timeout=10)
    assert (both.status_code, both.json()["error"]) == (422, "validation_failed"), "two PBXs named: refused"
    message = {"to": "7100", "from": "7101", "text": "hi", "context": "branch"}
    nowhere = httpx.post(salara.url + "/v1/messages", params={"pbx": "nowhere"}, json=message, timeout=10)
    assert (nowhere.status_code, nowhere.json()["error"]) == (422, "unknown_pbx")
    placed = httpx.post(salara.url + "/v1/calls", json=body, timeout=10)
    assert placed.status_code == 201, placed.text
    call = placed.json()
    assert call["id"].startswith("branch:salara-") and call["pbx"] == "branch"
    local = call["id"].removeprefix("branch:")
    assert until(lambda: local in pbx_b.cli("core show channels concise"), 5, "the call's channel on b")
    assert local not in pbx.cli("core show channels concise")
    seen = httpx.get(salara.url + f"/v1/calls/{call['id']}", timeout=5).json()
    assert seen["pbx"] == "branch" and seen["channels"], seen
    started = until(
        lambda: [e for e in crm_events(crm) if e.get("type") == "call.started" and e["call_id"] == call["id"]],
        10,
        "call.started of the branch call",
    )
    assert started[0]["pbx"] == "branch"


def test_one_pbx_down_leaves_the_other_working_and_ready_names_it(
    salara: SalaraProcess, crm: FakeCrm, pbx_b: PBXB
) -> None:
    pbx.stop("b")
    try:

        def down() -> dict[str, Any] | None:
            answer = httpx.get(salara.url + "/ready", timeout=5)
            return answer.json() if answer.status_code == 503 else None

        body = until(down, 15, "/ready 503 with b stopped")
        assert body["pbxs"]["branch"]["up"] is False and body["pbxs"]["default"]["up"] is True
        assert "branch" in body["reason"]
        assert salara.post({"exten": "8001", "context": "phones"}).json()["result"] in (0, 1, 2, 4, 8, 16)
        refused = salara.post({"exten": "7100", "context": "branch"})
        assert "not connected" in refused.text
        run = f"pbxdown-{time.time_ns()}"
        originate(None, run, "9001", "sim")
        until(
            lambda: any(e.get("event") == "Hangup" and e["linkedid"] == run for e in crm_events(crm)),
            20,
            "the default PBX's call at the CRM while b is down",
        )
    finally:
        pbx.start("b")
    until(lambda: httpx.get(salara.url + "/ready", timeout=5).status_code == 200, 30, "/ready 200 again")


def test_a_call_routed_over_fastagi_from_the_second_pbx_is_checked_and_routed_there(
    salara_factory: SalaraFactory, crm: FakeCrm, pbx_b: PBXB
) -> None:
    text = branch_config(crm, pbx_b).replace("5551001:8002\n5551002:9002\n", "5559200:7100\n")
    salara = salara_factory(text)
    agi = salara.env["SALARA_AGI_LISTEN"]
    assert "Success" in pbx_b.ami_command("Action: Setvar", "Variable: SALARA_AGI", f"Value: {agi}")
    reply = pbx_b.ami_command(
        "Action: Originate",
        "Channel: Local/5200@branch-in",
        'CallerID: "Customer" <5559200>',
        "Application: Wait",
        "Data: 5",
        "Async: true",
    )
    assert "Success" in reply

    def decided() -> dict[str, Any] | None:
        found = httpx.get(salara.url + "/v1/routing/decisions", params={"caller": "5559200"}, timeout=5).json()
        return found["decisions"][0] if found["decisions"] else None

    decision = until(decided, 10, "the routing decision")
    # 7100@branch exists on b only (its hint Custom:branch1, Idle): read there, the table's choice stands.
    assert (decision["destination"], decision["source"]) == ("7100", "table")
    assert (decision["candidates"][0]["exten"], decision["candidates"][0]["state"]) == ("7100", 0)
    assert decision["call_id"] is not None and decision["call_id"].startswith("branch:"), "checked in b's channels"
    # "core show channels concise": channel!context!exten!priority!...
    assert until(lambda: "!branch!7100!" in pbx_b.cli("core show channels concise"), 5, "the call sent on to 7100")


def test_a_fastagi_connection_from_an_address_not_allowed_is_closed_without_a_word(
    salara_factory: SalaraFactory, crm: FakeCrm, pbx_b: PBXB
) -> None:
    salara = salara_factory(branch_config(crm, pbx_b, agi_allow="127.0.0.1"))
    host, _, port = salara.env["SALARA_AGI_LISTEN"].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5, source_address=("127.0.0.2", 0)) as stranger:
        stranger.sendall(b"agi_network: yes\nagi_network_script: route\nagi_uniqueid: 1.1\n\n")
        stranger.settimeout(5)
        try:
            said = stranger.recv(4096)
        except ConnectionResetError:
            said = b""
    assert said == b"", "nothing is said to a stranger"
    with socket.create_connection((host, int(port)), timeout=5) as allowed:
        allowed.sendall(b"agi_network: yes\nagi_network_script: nothing\nagi_uniqueid: 1.2\n\n")
        allowed.settimeout(5)
        assert allowed.recv(4096).startswith(b"VERBOSE"), "an allowed peer is served (told the script is unknown)"
    until(lambda: "not an address [agi] allow names" in salara.log(), 5, "the log line")
    metrics = httpx.get(salara.url + "/metrics", timeout=5).text
    assert "salara_fastagi_strangers_total 1.0" in metrics


def get(salara: SalaraProcess, path: str, **params: str) -> httpx.Response:
    return httpx.get(salara.url + path, params=params, timeout=10)


def live_ids(salara: SalaraProcess) -> set[str]:
    return {call["id"] for call in get(salara, "/v1/calls").json()["calls"]}


@pytest.mark.parametrize("wrong", ["ca", "secret"])
def test_b_misconfigured_does_not_log_in_ready_says_why_and_a_keeps_working(
    salara_factory: SalaraFactory, crm: FakeCrm, pbx_b: PBXB, wrong: str
) -> None:
    text = branch_config(crm, pbx_b)
    if wrong == "ca":  # the system's CAs: the test CA's certificate is not theirs
        text = text.replace(f"tls_ca={pbx_b.ca_file}\n", "tls_ca=\n")
    else:
        text = text.replace(f"secret={pbx_b.secret}\ntls=yes", f"secret={WRONG_SECRET}\ntls=yes")
    salara = salara_factory(text, start=False)
    salara.secrets.add(WRONG_SECRET)
    salara.start(wait_ready=False)

    def unready() -> dict[str, Any] | None:
        answer = get(salara, "/ready")
        body = answer.json()
        return body if answer.status_code == 503 and body["pbxs"]["branch"]["last_error"] else None

    body = until(unready, 15, "/ready 503 naming b")
    assert body["pbxs"]["default"]["up"] is True and body["pbxs"]["branch"]["up"] is False
    assert body["reason"].startswith("PBX branch: ")
    error = body["pbxs"]["branch"]["last_error"].lower()
    assert ("certificate" in error) if wrong == "ca" else ("auth" in error or "login" in error), error
    # a answers; a request for b is 503, in each API's shape.
    assert salara.post({"exten": "8001", "context": "phones"}).json()["result"] in (0, 1, 2, 4, 8, 16)
    refused = salara.post({"exten": "7100", "context": "branch"})
    assert refused.status_code == 503 and refused.json()["result"] == -2, refused.text
    assert refused.json()["text"].startswith("Error: Asterisk (AMI) is not connected")
    v1 = get(salara, "/v1/extensions/7100", context="branch")
    assert (v1.status_code, v1.json()["error"]) == (503, "ami_unavailable")
    assert "branch" in v1.json()["message"]
    placed = httpx.post(salara.url + "/v1/calls", json={"from": "7100", "to": "7001", "pbx": "branch"}, timeout=10)
    assert (placed.status_code, placed.json()["error"]) == (503, "ami_unavailable")
    assert get(salara, "/v1/extensions/9001", context="sim").json()["pbx"] == "default"
    assert WRONG_SECRET not in salara.log() and "Traceback" not in salara.log()


def test_every_v1_route_that_takes_pbx_refuses_unknown_and_bad_names(salara: SalaraProcess) -> None:
    requests = {
        "calls": lambda pbx_name: httpx.post(
            salara.url + "/v1/calls", json={"from": "7100", "to": "7001", "context": "branch", "pbx": pbx_name}
        ),
        "messages": lambda pbx_name: httpx.post(
            salara.url + "/v1/messages", json={"to": "8001", "from": "8002", "text": "hi", "pbx": pbx_name}
        ),
        "extensions": lambda pbx_name: get(salara, "/v1/extensions/7100", context="branch", pbx=pbx_name),
        "endpoints": lambda pbx_name: get(salara, "/v1/endpoints/8001", pbx=pbx_name),
        "channels": lambda pbx_name: get(salara, "/v1/channels/PJSIP/8001-00000001", pbx=pbx_name),
    }
    for route, send in requests.items():
        unknown = send("nowhere")
        assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_pbx"), (route, unknown.text)
        assert unknown.json()["details"] == {"pbx": "nowhere"}, route
        for bad in ("b-x", "a" * 33, ""):
            refused = send(bad)
            assert (refused.status_code, refused.json()["error"]) == (422, "validation_failed"), (route, bad)
    # A name in another case than the section's is the same PBX.
    upper = get(salara, "/v1/extensions/7100", context="branch", pbx="BRANCH")
    assert upper.status_code == 200 and upper.json()["pbx"] == "branch", upper.text
    endpoint = get(salara, "/v1/endpoints/8001", pbx="Default")
    assert endpoint.status_code == 200 and endpoint.json()["name"] == "8001", endpoint.text


def test_a_branch_call_by_its_id_replayed_transferred_hung_up_with_lifecycle_events(
    salara: SalaraProcess, crm: FakeCrm, pbx_b: PBXB
) -> None:
    body = {"from": "7100", "to": "7001", "context": "branch", "pbx": "branch", "variables": {"CRM_X": "1"}}
    key = {"Idempotency-Key": f"review-{time.time_ns()}"}
    placed = httpx.post(salara.url + "/v1/calls", json=body, headers=key, timeout=10)
    assert placed.status_code == 201, placed.text
    call_id = placed.json()["id"]
    assert call_id.startswith("branch:salara-") and placed.headers["Location"] == f"/v1/calls/{call_id}"
    again = httpx.post(salara.url + "/v1/calls", json=body, headers=key, timeout=10)
    assert (again.status_code, again.json()["id"], again.headers.get("Idempotent-Replayed")) == (201, call_id, "true")
    # The same key and body for another PBX is another request: refused, never the branch call replayed.
    elsewhere = httpx.post(salara.url + "/v1/calls", json=body | {"pbx": "default"}, headers=key, timeout=10)
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (409, "idempotency_key_reused"), elsewhere.text

    def connected() -> dict[str, Any] | None:
        seen = get(salara, f"/v1/calls/{call_id}").json()
        return seen if len(seen.get("channels", ())) >= 2 else None

    seen = until(connected, 10, "the branch call's channels")
    assert seen["pbx"] == "branch" and all(c["uniqueid"].startswith("branch:") for c in seen["channels"])
    assert call_id in live_ids(salara)
    moved = httpx.post(salara.url + f"/v1/calls/{call_id}/transfer", json={"to": "7002", "context": "branch"})
    assert moved.status_code == 202, moved.text
    assert moved.json()["id"] == call_id and moved.json()["channel"].startswith("Local/")
    assert until(lambda: "!branch!7002!" in pbx_b.cli("core show channels concise"), 5, "the transfer on b")
    assert httpx.delete(salara.url + f"/v1/calls/{call_id}", timeout=10).status_code == 204
    until(lambda: get(salara, f"/v1/calls/{call_id}").json().get("ended_at"), 10, "the call ended")
    ended = httpx.delete(salara.url + f"/v1/calls/{call_id}", timeout=10)
    assert (ended.status_code, ended.json()["error"]) == (409, "call_ended")
    for missing in ("branch:salara-none", "nowhere:1.1"):
        assert get(salara, f"/v1/calls/{missing}").status_code == 404, missing

    def lifecycle() -> list[dict[str, Any]] | None:
        mine = [e for e in crm_events(crm) if e.get("call_id") == call_id and "type" in e]
        return mine if any(e["type"] == "call.ended" for e in mine) else None

    events = until(lifecycle, 10, "the branch call's call.ended")
    assert {e["type"] for e in events} >= {"call.started", "call.ended"}
    assert {e["pbx"] for e in events} == {"branch"}


def test_a_resync_of_b_ends_bs_calls_only(salara: SalaraProcess, crm: FakeCrm, pbx_b: PBXB) -> None:
    run = f"resync-{time.time_ns()}"
    on_a, on_b = f"{run}-a", f"{run}-b"
    originate(None, on_a, "9001", "sim", 60)
    originate(pbx_b, on_b, "7001", "branch", 60)
    until(lambda: {on_a, f"branch:{on_b}"} <= live_ids(salara), 10, "both calls live")
    resyncs = salara.log().count("calls resynchronised with Asterisk branch")
    pbx.stop("b")
    try:
        until(lambda: get(salara, "/ready").status_code == 503, 15, "/ready 503 with b stopped")
        assert on_a in live_ids(salara)
    finally:
        pbx.start("b")
    until(lambda: get(salara, "/ready").status_code == 200, 30, "/ready 200 again")
    until(lambda: salara.log().count("calls resynchronised with Asterisk branch") > resyncs, 15, "b resynchronised")

    def b_hangups() -> list[dict[str, Any]] | None:
        found = [e for e in crm_events(crm) if e.get("event") == "Hangup" and e.get("linkedid") == f"branch:{on_b}"]
        return found or None

    # Seen as b shut down, or synthesized by the resync after it came back: b's call ended, as b's.
    ended = until(b_hangups, 15, "b's call's Hangup")
    assert {e["pbx"] for e in ended} == {"branch"} and all(e["uniqueid"].startswith("branch:") for e in ended)
    # a's call is untouched: live, no Hangup, no call.ended.
    assert on_a in live_ids(salara) and f"branch:{on_b}" not in live_ids(salara)
    assert on_a in pbx.cli("core show channels concise")
    touched = [
        e
        for e in crm_events(crm)
        if (e.get("event") == "Hangup" and e.get("linkedid") == on_a)
        or (e.get("type") == "call.ended" and e.get("call_id") == on_a)
    ]
    assert touched == []


def test_metrics_carry_each_pbxs_name(salara: SalaraProcess) -> None:
    text = get(salara, "/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    up = {sample.labels["pbx"]: sample.value for sample in families["salara_ami_up"].samples}
    assert up == {"default": 1.0, "branch": 1.0}
    logins = {s.labels["pbx"]: s.value for s in families["salara_ami_logins"].samples if s.name.endswith("_total")}
    assert logins.keys() == {"default", "branch"} and min(logins.values()) >= 1
