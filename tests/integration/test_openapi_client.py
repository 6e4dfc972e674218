"""A client generated from ``docs/openapi.json`` places a call on the real Asterisk.

openapi-python-client generates a Python package from the committed
document (any warning fails the test); the test imports it and, with a
token presented the way the document's security schemes say, places a call
from 8001 to 9001 in context phones (8001 is the baresip phone, which
answers; 9001 answers and waits 5 s), follows it to ``up``, hangs it up and
reads its outcome, every step through the generated code. The running
salara's ``/openapi.json`` is the committed document too.

The same running salara's ``/metrics`` (what Prometheus scrapes) has every
metric the Grafana dashboard and the alert rules use, FastAGI's included,
and passes ``promtool check metrics`` (see tests/unit/test_metrics_rules.py).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
import pytest

from salara.api.security import tokens as auth
from testpbx import pbx
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, free_port
from tests.unit.test_metrics_rules import dashboard_expressions, exported, metric_names, require_promtool, rules

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO / "docs" / "openapi.json"
PACKAGE = "salara_openapi_client"
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = 20) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The package openapi-python-client generates from docs/openapi.json, imported."""
    where = tmp_path_factory.mktemp("client")
    config = where / "config.json"
    # A recording is bytes to a client: the generator knows audio types only as octet streams.
    audio = ("audio/wav", "audio/x-gsm", "audio/basic", "audio/x-alaw-basic")
    overrides = dict.fromkeys(audio, "application/octet-stream")
    config.write_text(
        json.dumps({"package_name_override": PACKAGE, "post_hooks": [], "content_type_overrides": overrides})
    )
    generator = Path(sys.executable).with_name("openapi-python-client")
    run = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(DOCUMENT),
            "--meta",
            "none",
            "--output-path",
            str(where / PACKAGE),
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def module(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def operator_idle() -> bool:
    return "\r\nStatus: 0\r\n" in pbx.ami_command("Action: ExtensionState", "Exten: 8001", "Context: phones")


def test_a_generated_client_places_a_call_and_hangs_it_up(salara_factory: SalaraFactory, generated: ModuleType) -> None:
    token = auth.new_token()
    config = EXAMPLE_CONFIG.read_text() + (
        f"\n[token crm]\nhash = {auth.hash_token(token)}\nrights = call,state\ncontexts = phones\n"
        "destinations = ^[0-9]{4}$\n"
    )
    salara = salara_factory(config, start=False, SALARA_URL_DEST_URL_EVENT="")
    salara.headers = {"authorization": f"Bearer {token}"}
    salara.secrets.add(token)
    salara.start()
    served = httpx.get(f"{salara.url}/openapi.json", headers=salara.headers, timeout=10)
    assert served.status_code == 200 and served.json() == json.loads(DOCUMENT.read_text())

    client_module = module(generated, "client")
    models = module(generated, "models")
    place_call = module(generated, "api.calls.place_call")
    get_call = module(generated, "api.calls.get_call")
    hang_up_call = module(generated, "api.calls.hang_up_call")
    list_calls = module(generated, "api.calls.list_calls")
    get_extension_state = module(generated, "api.states.get_extension_state")
    bearer = client_module.AuthenticatedClient(base_url=salara.url, token=token, timeout=httpx.Timeout(15))
    api_key = client_module.AuthenticatedClient(
        base_url=salara.url, token=token, auth_header_name="X-API-Key", prefix="", timeout=httpx.Timeout(15)
    )
    anonymous = client_module.Client(base_url=salara.url, timeout=httpx.Timeout(15))

    refused = get_extension_state.sync_detailed("8001", client=anonymous, context="phones")
    assert refused.status_code == 401 and isinstance(refused.parsed, models.ErrorBody)
    assert refused.parsed.error == "unauthorized"
    wait_for("8001 idle", operator_idle)
    state = get_extension_state.sync("8001", client=api_key, context="phones")
    assert isinstance(state, models.ExtensionView) and state.available, state

    body = models.CallCreate(
        from_="8001",
        to="9001",
        context="phones",
        caller_id_name="Generated client",
        variables=models.CallCreateVariables.from_dict({"CRM_ID": "4711"}),
        client_state="openapi-client",
    )
    placed = place_call.sync_detailed(client=bearer, body=body, idempotency_key=f"openapi-client-{time.time_ns()}")
    call_id: str | None = None
    try:
        assert placed.status_code == 201, placed.content
        call = placed.parsed
        assert isinstance(call, models.CallView), call
        call_id = call.id
        assert placed.headers["location"] == f"/v1/calls/{call_id}"
        assert (call.from_, call.to, call.context, call.placed_by_salara) == ("8001", "9001", "phones", True)
        assert call.client_state == "openapi-client"

        def up() -> Any:
            now = get_call.sync(call_id, client=bearer)
            assert isinstance(now, models.CallView), now
            assert now.state.value != "ended", now
            return now if now.state.value == "up" else None

        live = wait_for(f"call {call_id} up", up)
        assert live.channels and all(channel.name for channel in live.channels)
        listed = list_calls.sync(client=bearer)
        assert isinstance(listed, models.CallList) and call_id in [c.id for c in listed.calls]

        hung_up = hang_up_call.sync_detailed(call_id, client=bearer)
        assert hung_up.status_code == 204, hung_up.content

        def ended() -> Any:
            now = get_call.sync(call_id, client=bearer)
            assert isinstance(now, models.CallView), now
            return now if now.state.value == "ended" and now.outcome else None

        done = wait_for(f"call {call_id} ended", ended)
        assert done.outcome.result.value == "answered"
        assert done.outcome.operator.result.value == "answered"
        again = hang_up_call.sync_detailed(call_id, client=bearer)
        assert again.status_code == 409 and isinstance(again.parsed, models.ErrorBody)
        assert again.parsed.error == "call_ended"
    finally:
        if call_id is not None:  # whatever failed above, the call does not outlive the test
            httpx.delete(f"{salara.url}/v1/calls/{call_id}", headers=salara.headers, timeout=10)
        wait_for("8001 idle again", operator_idle)


def test_the_running_salaras_metrics_have_what_the_dashboard_and_the_rules_use(
    salara_factory: SalaraFactory,
) -> None:
    promtool = require_promtool()
    token = auth.new_token()
    config = EXAMPLE_CONFIG.read_text() + f"\n[token prometheus]\nhash = {auth.hash_token(token)}\nrights = state\n"
    nowhere = f"http://127.0.0.1:{free_port()}"  # a CRM that is not there: events wait, lookups fail
    salara = salara_factory(
        config, start=False, SALARA_URL_DEST_URL_EVENT=f"{nowhere}/events", SALARA_URL_DEST_URL=f"{nowhere}/lookup?p="
    )
    salara.headers = {"authorization": f"Bearer {token}"}
    salara.secrets.add(token)
    salara.start()
    scrape = httpx.get(f"{salara.url}/metrics", headers=salara.headers, timeout=10)
    assert scrape.status_code == 200
    have = exported(scrape.text)
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    used |= {name for expr in dashboard_expressions() for name in metric_names(expr)}
    assert sorted(used - have) == []
    assert "salara_fastagi_sessions 0.0" in scrape.text and 'salara_ami_up{pbx="default"} 1.0' in scrape.text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=scrape.text, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
