"""The CRM's routing answer names the caller: the name in CALLERID(name), on the real test Asterisk."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testpbx import pbx
from tests.amiwatch import EventWatch
from tests.conftest import SalaraFactory
from tests.crm import KEY_WORD, FakeCrm
from tests.integration.test_routing import config_text, incoming_call, route_here


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm(
        routes={
            "5553001": {KEY_WORD: "9002", "caller_name": "Anna Schmidt (ACME)", "client_state": "deal-17"},
            "5553002": {KEY_WORD: "9003", "caller_name": 'Bobby "Tables" <x>'},
        }
    ).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_channels(asterisk: None) -> Iterator[None]:
    yield
    pbx.hangup_all()


def arrival(events: EventWatch, caller: str, exten: str) -> dict[str, str]:
    """The routed call of ``caller`` entering ``exten`` (its first dialplan step after the AGI)."""
    return events.wait_for(
        lambda e: (
            e.get("Event") == "Newexten"
            and e.get("Channel", "").startswith("Local/5100@phones-")
            and e.get("CallerIDNum") == caller
            and e.get("Exten") == exten
            and e.get("Priority") == "1"
        ),
        10,
    )


def test_the_crms_caller_name_is_set_on_the_call_and_a_quoted_one_refused(
    salara_factory: SalaraFactory, crm: FakeCrm, ami_events: EventWatch
) -> None:
    salara = salara_factory(config_text(crm))
    route_here(salara)
    incoming_call("5553001")
    step = arrival(ami_events, "5553001", "9002")
    assert step["CallerIDName"] == "Anna Schmidt (ACME)"  # Asterisk's own view of the channel after the AGI
    renamed = [
        e for e in ami_events.snapshot() if e.get("Event") == "NewCallerid" and e.get("Channel") == step["Channel"]
    ]
    assert renamed[-1]["CallerIDName"] == "Anna Schmidt (ACME)"
    # A name with quotes and <> is refused; the call is routed all the same, its name untouched.
    incoming_call("5553002")
    assert arrival(ami_events, "5553002", "9003")["CallerIDName"] == "Customer"
    assert "caller name refused" in salara.log()
