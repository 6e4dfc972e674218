"""Several PBXs, reviewed on two real Asterisk instances: b misconfigured, /v1 with ``pbx``, ids, resyncs.

Instance a of the test PBX is ``[ami]`` (``default``), instance b is
``[ami branch]`` over TLS, as in :mod:`tests.integration.test_pbxs`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testpbx import pbx
from tests.conftest import SalaraFactory, SalaraProcess
from tests.crm import FakeCrm
from tests.integration.test_pbxs import branch_config, crm_events, until
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


@pytest.fixture
def salara(salara_factory: SalaraFactory, crm: FakeCrm, pbx_b: PBXB) -> SalaraProcess:
    return salara_factory(branch_config(crm, pbx_b))


def originate(b: PBXB | None, channel_id: str, exten: str, context: str, wait_s: int) -> None:
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
