"""A token sees and controls only its calls: those it placed and those in its contexts; admin sees all.

Against the real test Asterisk: ``crm`` (contexts phones) places calls and
sees the calls in phones it did not place; ``sales`` (contexts queue-agents,
rights call and state) sees and controls none of them; ``ops`` (admin) sees
everything.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from salara.api.security import tokens as auth
from testpbx import pbx
from tests.amiwatch import AMIRecorder
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory
from tests.integration.test_security import CALL_RIGHTS, bearer, token_section
from tests.integration.test_v1_api import EventStream, wait_for

pytestmark = pytest.mark.pbx


def test_a_token_sees_and_controls_only_its_calls(salara_factory: SalaraFactory, ami_recorder: AMIRecorder) -> None:
    crm, sales, ops = auth.new_token(), auth.new_token(), auth.new_token()
    config = (
        EXAMPLE_CONFIG.read_text()
        + token_section("crm", crm, rights=CALL_RIGHTS, contexts="phones", destinations="^[0-9]{3,4}$")
        + token_section("sales", sales, rights="call,state", contexts="queue-agents", destinations="any")
        + token_section("ops", ops, rights="admin,state")
    )
    # Events of every call, so that a stream would show the inbound one too if it were let through.
    salara = salara_factory(
        config,
        start=False,
        SALARA_AMI_PORT=str(ami_recorder.port),
        SALARA_EVENT_HANGUP="2",
        SALARA_EVENT_NEWCHANNEL="2",
    )
    salara.headers = bearer(ops)
    salara.secrets |= {crm, sales, ops}
    salara.start()
    url = salara.url
    sales_stream = EventStream(f"{url}/v1/events", bearer(sales))
    crm_stream = EventStream(f"{url}/v1/events", bearer(crm))
    try:
        placed = httpx.post(
            f"{url}/v1/calls", json={"from": "8001", "to": "9999", "context": "phones"}, headers=bearer(crm), timeout=15
        )
        assert placed.status_code == 201, placed.text
        mine = placed.json()["id"]
        # A call into phones that salara did not place (as an inbound trunk call would be).
        pbx.ami_command(
            "Action: Originate", "Channel: Local/9999@phones", "Application: Wait", "Data: 600", "Async: true"
        )

        def ids(token: str) -> set[str]:
            response = httpx.get(f"{url}/v1/calls", headers=bearer(token), timeout=15)
            assert response.status_code == 200, response.text
            return {call["id"] for call in response.json()["calls"]}

        def both() -> set[str] | None:
            listed = ids(ops)
            return listed if mine in listed and len(listed) >= 2 else None

        everything = wait_for("both calls listed for admin", both)
        assert mine in everything
        inbound = next(iter(everything - {mine}))
        assert ids(crm) >= {mine, inbound}, "the token's own call and the call in its context"
        assert ids(sales) == set()
        for call_id in (mine, inbound):
            assert httpx.get(f"{url}/v1/calls/{call_id}", headers=bearer(sales)).status_code == 404
            assert httpx.delete(f"{url}/v1/calls/{call_id}", headers=bearer(sales)).status_code == 404
            moved = httpx.post(
                f"{url}/v1/calls/{call_id}/transfer",
                json={"to": "agent1", "context": "queue-agents"},
                headers=bearer(sales),
            )
            assert moved.status_code == 404
            assert httpx.get(f"{url}/v1/calls/{call_id}", headers=bearer(crm)).status_code == 200
        # The other token's requests reached no channel: both calls still live.
        assert ids(ops) >= {mine, inbound}
        assert httpx.delete(f"{url}/v1/calls/{inbound}", headers=bearer(crm)).status_code == 204
        assert httpx.delete(f"{url}/v1/calls/{mine}", headers=bearer(crm)).status_code == 204
        crm_stream.wait_for(lambda e: e.get("event") == "Hangup" and inbound in e.get("data", ""), 20)
        time.sleep(0.5)
        seen_by_sales = {json.loads(e["data"])["linkedid"] for e in sales_stream.events if "data" in e}
        assert seen_by_sales.isdisjoint({mine, inbound})
    finally:
        sales_stream.close()
        crm_stream.close()
        pbx.hangup_all()
