"""Several PBXs behind one salara: two real Asterisk instances, one salara process.

Instance a of the test PBX is ``[ami]`` (the ``default`` PBX); instance b is
``[ami branch]``, reached over AMI with TLS (its certificate verified
against the test CA) and serving the dialplan context ``branch``. The CRM is
a real HTTP server (:class:`~tests.crm.FakeCrm`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testpbx import pbx
from tests.conftest import SalaraFactory, SalaraProcess
from tests.crm import FakeCrm
from tests.integration.test_events import config_text
from tests.pbxb import PBXB


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


def originate(b: PBXB | None, channel_id: str, exten: str, context: str) -> None:
    """A Local channel to ``exten@context`` that waits 1 s, on b (or on a with ``b`` None), sent on AMI directly."""
    lines = (
        "Action: Originate",
        f"Channel: Local/{exten}@{context}",
        "Application: Wait",
        "Data: 1",
        "Variable: WAITSECS=1",
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
