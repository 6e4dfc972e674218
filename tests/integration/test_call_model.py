"""The one call model on the real Asterisk: one ``CoreShowChannels`` per AMI login."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.amiwatch import AMIRecorder
from tests.conftest import SalaraFactory

pytestmark = pytest.mark.pbx


def wait_until(predicate: object, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def ready(url: str) -> bool:
    try:
        return httpx.get(url + "/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("with_crm", [True, False], ids=["events-to-a-crm", "live-stream-only"])
def test_salara_lists_asterisks_channels_once_per_login(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder, with_crm: bool
) -> None:
    env = {"SALARA_AMI_PORT": str(ami_recorder.port), "SALARA_EVENT_SWEEP_INTERVAL": "3600"}
    if with_crm:
        env["SALARA_URL_DEST_URL_EVENT"] = "http://127.0.0.1:9/events"  # nothing listens: events wait
    else:
        env["SALARA_URL_DEST_URL_EVENT"] = ""
    salara = salara_factory(**env)
    wait_until(lambda: "calls resynchronised with Asterisk" in salara.log())
    time.sleep(0.5)  # anything else that would list channels after the login has had its chance
    assert ami_recorder.actions().count("Login") == 1
    assert ami_recorder.actions().count("CoreShowChannels") == 1

    ami_recorder.cut()  # the link drops; salara logs in again
    wait_until(lambda: ami_recorder.actions().count("Login") == 2 and ready(salara.url))
    wait_until(lambda: salara.log().count("calls resynchronised with Asterisk") == 2)
    time.sleep(0.5)
    assert ami_recorder.actions().count("CoreShowChannels") == 2
