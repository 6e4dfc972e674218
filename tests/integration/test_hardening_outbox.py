"""A damaged outbox file does not take salara down: a real salara on the test Asterisk starts with a fresh one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from testpbx import pbx
from tests.amiwatch import EventWatch
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory
from tests.crm import FakeCrm

GARBAGE = b"\x00\x01 not a database: a disk that lied, a copy cut short \xff" * 100


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm(routes={"5553001": "9002"}).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_channels(asterisk: None) -> Iterator[None]:
    yield
    pbx.hangup_all()


def test_salara_starts_on_a_damaged_outbox_with_a_fresh_one(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    text = EXAMPLE_CONFIG.read_text()
    text = text.replace(
        "dest_url=http://127.0.0.1:3000/call_center/incoming_call/check_is_org_only?phone=",
        f"dest_url={crm.url}/lookup?phone=",
    )
    text = text.replace("dest_url_event=http://127.0.0.1:3000/post", f"dest_url_event={crm.url}/events")
    salara = salara_factory(text, start=False)
    outbox = salara.workdir / "outbox.db"
    outbox.write_bytes(GARBAGE)
    salara.start()  # ready: AMI up, the API answering

    asides = [p for p in salara.workdir.iterdir() if p.name.startswith("outbox.db.corrupt-")]
    assert [p.read_bytes() for p in asides] == [GARBAGE]
    aside = asides[0]
    errors = [line for line in salara.log().splitlines() if " ERROR " in line and "damaged" in line]
    assert len(errors) == 1 and str(outbox) in errors[0] and str(aside) in errors[0], errors

    # The API answers.
    assert salara.post({"exten": "9001", "context": "sim"}).json()["result"] == 0
    metrics = httpx.get(f"{salara.url}/metrics", timeout=5).text
    assert "salara_outbox_recovered_total 1.0" in metrics

    # Routing answers: an incoming call goes where the CRM says.
    assert "Success" in pbx.ami_command(
        "Action: Setvar", "Variable: SALARA_AGI", f"Value: {salara.env['SALARA_AGI_LISTEN']}"
    )
    assert "Success" in pbx.ami_command(
        "Action: Originate",
        "Channel: Local/5100@phones",
        'CallerID: "Customer" <5553001>',
        "Application: Wait",
        "Data: 15",
        "Async: true",
    )
    ami_events.wait_for(
        lambda e: (
            e.get("Event") == "Newexten"
            and e.get("Channel", "").startswith("Local/5100@phones-")
            and e.get("Exten") == "9002"
            and e.get("Priority") == "1"
        ),
        10,
    )
    assert "route 5553001 -> 9002 via crm" in salara.log()
    # The fresh outbox is a working outbox: the routed call's events reach the CRM through it.
    pbx.hangup_all()
    deadline = time.monotonic() + 10
    while not any(received.json().get("event") == "Hangup" for received in crm.events()):
        assert time.monotonic() < deadline, "no Hangup reached the CRM"
        time.sleep(0.1)
