"""``client_state`` on ``POST /v1/calls``: checked, kept with the call, shown in its view, echoed on its events."""

from __future__ import annotations

import httpx

from salara import config
from salara.api.app import create_app
from salara.calls.lifecycle import CallLifecycle
from salara.control import CallControl
from tests.unit.test_api_security import FakeAMI, bearer
from tests.unit.test_v1_app import CRM, SECURED, assert_error


def secured(text: str = SECURED) -> tuple[httpx.AsyncClient, FakeAMI, CallControl]:
    """The API with tokens over a faked AMI, and its call control."""
    ami = FakeAMI()
    control = CallControl.over(ami, config.build(config.parse_text(text)))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(control), client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://salara"), ami, control


async def test_client_state_is_kept_with_the_call_and_shown_in_its_view() -> None:
    client, ami, _ = secured()
    async with client:
        body = {"from": "8001", "to": "9001", "client_state": "lead-4711 «ü»"}
        placed = await client.post("/v1/calls", json=body, headers=bearer(CRM))
        assert placed.status_code == 201, placed.text
        assert placed.json()["client_state"] == "lead-4711 «ü»"
        again = await client.get(f"/v1/calls/{placed.json()['id']}", headers=bearer(CRM))
        assert again.json()["client_state"] == "lead-4711 «ü»"
        plain = await client.post("/v1/calls", json={"from": "8001", "to": "9001"}, headers=bearer(CRM))
        assert plain.json()["client_state"] is None
    assert ami.actions.count("Originate") == 2
    assert not any("lead-4711" in str(field) for fields in ami.originated for field in fields), "never sent to AMI"


async def test_client_state_is_at_most_1024_bytes_of_utf8() -> None:
    client, ami, _ = secured("[api]\nmax_field_bytes=4096\n" + SECURED)
    async with client:
        fits = {"from": "8001", "to": "9001", "client_state": "é" * 512}  # 1,024 bytes
        assert (await client.post("/v1/calls", json=fits, headers=bearer(CRM))).status_code == 201
        over = {"from": "8001", "to": "9001", "client_state": "é" * 512 + "x"}  # 1,025 bytes, 513 characters
        assert_error(await client.post("/v1/calls", json=over, headers=bearer(CRM)), 422, "validation_failed")
    assert ami.actions.count("Originate") == 1


async def test_an_idempotent_replay_needs_the_same_client_state() -> None:
    client, _, _ = secured()
    async with client:
        key = {"Idempotency-Key": "click-9", **bearer(CRM)}
        body = {"from": "8001", "to": "9001", "client_state": "a"}
        first = await client.post("/v1/calls", json=body, headers=key)
        assert (await client.post("/v1/calls", json=body, headers=key)).json()["id"] == first.json()["id"]
        other = await client.post("/v1/calls", json={**body, "client_state": "b"}, headers=key)
        assert_error(other, 409, "idempotency_key_reused")


async def test_the_lifecycle_events_of_a_placed_call_carry_its_client_state() -> None:
    client, _, control = secured()
    lifecycle = CallLifecycle(control.registry)
    async with client:
        body = {"from": "8001", "to": "9001", "client_state": "crm-1"}
        placed = await client.post("/v1/calls", json=body, headers=bearer(CRM))
    call_id = placed.json()["id"]
    control.registry.originate_result(call_id, "Failure", 5, 1.0, 1.0)  # the operator was busy
    started, ended = lifecycle.take()
    assert started.body["client_state"] == ended.body["client_state"] == "crm-1"
    assert (ended.body["result"], ended.body["operator"], ended.body["to"]) == ("busy", "8001", "9001")
