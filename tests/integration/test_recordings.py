"""Call recordings on the real test Asterisk: MixMonitor's file, served by ``GET /v1/recordings/{id}``.

A call placed through ``/v1/calls`` with ``"record": true`` rings the real
SIP phone 8001 (baresip, auto-answer, sending a 440 Hz tone), then dials
``TALK``: a Local channel that answers and stays ``TALK_S`` seconds, bridged
to the phone, so ``MixMonitor``'s option ``b`` records the talk. The test
PBX writes its monitor files under its chroot (``astspooldir`` of
``testpbx/asterisk/asterisk.conf``), which is the salara's ``monitor_dir``.
An incoming call routed by the salara (FastAGI, ``record_inbound``) is sent
on to ``TALK`` too, its caller sending a tone (``Milliwatt``).
The extensions live in a context of this module's own, removed after.
"""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from salara.api.security import tokens as auth
from testpbx import pbx
from tests import dialplan as shared_dialplan
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess, free_port
from tests.crm import FakeCrm
from tests.integration.test_v1_api import phone_idle, wait_for

CONTEXT = "salara-recordings-test"
TALK = "7301"
"""Dials ``talk``: a Local channel that answers and waits, so the phone is bridged to it."""
TALK_S = 4
INBOUND = "7300"
"""Where an incoming call enters: the FastAGI route of the salara under test, which sends it on to ``TALK``."""
TALK_DEVICE = "Custom:salara-recordings-7301"
MONITOR_DIR = pbx.ROOT / "var" / "spool" / "asterisk" / "monitor"
"""Where the test Asterisk's MixMonitor writes: ``astspooldir``/monitor inside its chroot."""
TOKENS = {"crm": "rec-crm-token-5b1f", "caller": "rec-caller-token-77ad"}


def add_extension(exten: str, priority: str, application: str, data: str = "") -> None:
    shared_dialplan.add_extension(CONTEXT, exten, priority, application, data)


@pytest.fixture
def dialplan(asterisk: None) -> Iterator[None]:
    add_extension("8001", "hint", "PJSIP/8001")  # the operator's state, checked in the call's context
    add_extension(TALK, "hint", TALK_DEVICE)  # routing checks the destination's state
    add_extension(TALK, "1", "Dial", f"Local/talk@{CONTEXT},20")
    add_extension(TALK, "2", "Hangup")
    add_extension("talk", "1", "Answer")
    add_extension("talk", "2", "Wait", str(TALK_S))
    add_extension("talk", "3", "Hangup")
    pbx.ami_command("Action: Setvar", f"Variable: DEVICE_STATE({TALK_DEVICE})", "Value: NOT_INUSE")
    yield
    shared_dialplan.remove_extensions(CONTEXT, "8001", TALK, "talk", INBOUND)


@pytest.fixture(autouse=True)
def phone_is_free(asterisk: None) -> None:
    wait_for("phone 8001 idle", phone_idle, 20)


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm().start()
    yield server
    server.stop()


@pytest.fixture
def salara(salara_factory: SalaraFactory, crm: FakeCrm) -> SalaraProcess:
    """A salara recording the calls it places, with a token holding ``recordings`` and one without."""
    text = EXAMPLE_CONFIG.read_text().replace(
        "dest_url_event=http://127.0.0.1:3000/post", f"dest_url_event={crm.url}/events"
    )
    for name, rights in (("crm", "call,state,recordings"), ("caller", "call,state")):
        text += f"\n[token {name}]\nhash = {auth.hash_token(TOKENS[name])}\nrights = {rights}\n"
        text += f"contexts = {CONTEXT}\ndestinations = any\n"
    port = free_port()
    process = salara_factory(
        text,
        start=False,
        SALARA_URL_REST_SERVER=f"127.0.0.1:{port}",
        SALARA_API_PUBLIC_URL=f"http://127.0.0.1:{port}",
        SALARA_EVENT_PAYLOAD="extended",
        SALARA_EVENT_LIFECYCLE="yes",
        SALARA_RECORDINGS_RECORD_CALLS="yes",
        SALARA_RECORDINGS_RECORD_INBOUND="yes",
        SALARA_URL_DEST_URL="",  # routing asks no CRM: the [general] default decides
        SALARA_GENERAL_DEFAULT=TALK,
        SALARA_RECORDINGS_MONITOR_DIR=str(MONITOR_DIR),
    )
    process.headers = bearer("crm")
    process.start()
    return process


def bearer(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[name]}"}


def call_ended(crm: FakeCrm, call_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for received in crm.events():
            body = received.json()
            if body.get("type") == "call.ended" and body.get("call_id") == call_id:
                return body  # type: ignore[no-any-return]
        return None

    crm.wait_for(lambda _: found() is not None, 40)
    ended = found()
    assert ended is not None
    return ended


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as audio:
        return float(audio.getnframes()) / float(audio.getframerate())


def test_a_recorded_call_is_served_by_range_to_the_right_token_and_by_its_signed_link(
    salara: SalaraProcess, crm: FakeCrm, dialplan: None
) -> None:
    response = httpx.post(
        f"{salara.url}/v1/calls",
        json={"from": "8001", "to": TALK, "context": CONTEXT, "record": True},
        headers=bearer("crm"),
        timeout=15,
    )
    assert response.status_code == 201, response.text
    call_id = response.json()["id"]
    ended = call_ended(crm, call_id)
    assert ended["result"] == "answered", ended
    assert ended["talk_s"] >= TALK_S - 1, ended

    # The file MixMonitor wrote, named after the call id, in Asterisk's monitor directory.
    path = MONITOR_DIR / f"salara-rec-{call_id}.wav"
    wait_for("the recording's file", path.exists, 10)
    try:
        check_served(salara, call_id, path, ended)
    finally:
        path.unlink(missing_ok=True)


def check_served(salara: SalaraProcess, call_id: str, path: Path, ended: dict[str, Any]) -> None:
    url = f"{salara.url}/v1/recordings/{call_id}"

    def whole() -> httpx.Response:
        return httpx.get(url, headers=bearer("crm"), timeout=10)

    # MixMonitor closes the file (its WAV header made right) just after the hangup.
    def closed() -> httpx.Response | None:
        answer = whole()
        return answer if answer.status_code == 200 and answer.content == path.read_bytes() else None

    got = wait_for("the whole file", closed)
    assert got is not None
    assert got.headers["content-type"] == "audio/wav"
    assert got.headers["accept-ranges"] == "bytes"
    data = got.content
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    # Its audio length is the talk time (MixMonitor b: only while bridged).
    assert abs(wav_seconds(data) - ended["talk_s"]) <= 1.0, (wav_seconds(data), ended["talk_s"])

    # HTTP Range: the exact bytes, 206; beyond the file, 416.
    part = httpx.get(url, headers={**bearer("crm"), "range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206, part.text
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    beyond = httpx.get(url, headers={**bearer("crm"), "range": f"bytes={len(data) + 10}-"}, timeout=10)
    assert beyond.status_code == 416

    # A token without the right: 403; no token: 401.
    refused = httpx.get(url, headers=bearer("caller"), timeout=10)
    assert refused.status_code == 403, refused.text
    assert httpx.get(url, timeout=10).status_code == 401

    # call.ended's link: signed, under public_url, served without any header.
    link = ended["recording"]
    assert isinstance(link, str) and link.startswith(f"{salara.url}/v1/recordings/{call_id}?expires="), link
    plain = httpx.get(link, timeout=10)
    assert plain.status_code == 200 and plain.content == data
    query = dict(part.split("=", 1) for part in urlsplit(link).query.split("&"))
    assert int(query["expires"]) > time.time()
    # Tampered (another expiry, another call, another signature) or expired: 403.
    later = link.replace(f"expires={query['expires']}", f"expires={int(query['expires']) + 1}")
    flipped = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    expired_sig = signed_expired(salara, call_id)
    for bad in (later, link.replace(query["signature"], flipped), expired_sig):
        answer = httpx.get(bad, timeout=10)
        assert answer.status_code == 403, (bad, answer.text)
        assert answer.json()["error"] == "link_refused"


def signed_expired(salara: SalaraProcess, call_id: str) -> str:
    """A link signed with salara's own key (its state directory) that expired a minute ago."""
    from salara.calls.recording import signed_path

    key = bytes.fromhex((Path(salara.env["SALARA_OUTBOX_PATH"]).parent / "recordings.key").read_text().strip())
    return salara.url + signed_path(key, call_id, int(time.time()) - 60)


def test_a_routed_inbound_call_is_recorded_for_its_talk(salara: SalaraProcess, crm: FakeCrm, dialplan: None) -> None:
    agi = salara.env["SALARA_AGI_LISTEN"]
    add_extension(INBOUND, "1", "AGI", f"agi://{agi}/route?context={CONTEXT}")
    add_extension(INBOUND, "2", "Hangup")
    call_id = f"salara-rec-in-{time.time_ns()}"  # the PBX is shared: know this call by its own id
    reply = pbx.ami_command(
        "Action: Originate",
        f"Channel: Local/{INBOUND}@{CONTEXT}",
        'CallerID: "Customer" <5557300>',
        "Application: Milliwatt",  # the caller's audio once answered (a trunk's caller talks; Wait sends nothing)
        f"ChannelId: {call_id}",
        "Async: true",
    )
    assert "Success" in reply, reply
    ended = call_ended(crm, call_id)
    assert (ended["direction"], ended["to"], ended["result"]) == ("inbound", TALK, "answered"), ended
    path = MONITOR_DIR / f"salara-rec-{call_id}.wav"
    try:
        wait_for("the recording's file", path.exists, 10)

        def closed() -> bytes | None:
            answer = httpx.get(f"{salara.url}/v1/recordings/{call_id}", headers=bearer("crm"), timeout=10)
            return answer.content if answer.status_code == 200 and answer.content == path.read_bytes() else None

        data = wait_for("the whole file", closed)
        assert data is not None
        assert abs(wav_seconds(data) - ended["talk_s"]) <= 1.0, (wav_seconds(data), ended["talk_s"])
        assert isinstance(ended["recording"], str) and f"/v1/recordings/{call_id}?" in ended["recording"]
    finally:
        path.unlink(missing_ok=True)
