"""Recordings in process: file names, signed links, the files' finder and retention, the API route over ASGI.

The integration test (tests/integration/test_recordings.py) records a real
call on the test Asterisk; here the files are written by the test, as
MixMonitor would name them, into a temporary monitor directory.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from salara import config
from salara.api.app import create_app
from salara.calls.call import Call
from salara.calls.recording import (
    RecordingError,
    file_name,
    mixmonitor_file,
    recording_url,
    signature,
    signature_problem,
    signed_path,
)
from salara.control import CallControl, PlaceCall
from salara.recordings.files import RecordingFiles
from tests.unit.test_api_security import LOCAL, FakeAMI, section

TOKEN = "unit-rec-token-0123456789abcdefghijklmnopq"
NO_RIGHT = "unit-rec-other-0123456789abcdefghijklmnopq"
KEY = b"k" * 32


def test_file_names_come_from_the_call_id_and_refuse_anything_but_safe_characters() -> None:
    assert mixmonitor_file("salara-80e54b6ae6dc", "wav") == "salara-rec-salara-80e54b6ae6dc.wav"
    assert mixmonitor_file("1733112345.12", "wav49") == "salara-rec-1733112345.12.wav49"
    assert file_name("1733112345.12", "wav49") == "salara-rec-1733112345.12.WAV"  # what Asterisk writes
    for bad in ("../../etc/passwd", "a/b", "..", ".", "", "x" * 65, "a b", "a\r\nb", "é"):
        with pytest.raises(RecordingError):
            mixmonitor_file(bad, "wav")


def test_a_signed_link_holds_until_it_expires_and_only_for_its_call_and_time() -> None:
    path = signed_path(KEY, "c1", 2000)
    assert path == f"/v1/recordings/c1?expires=2000&signature={signature(KEY, 'c1', 2000)}"
    good = signature(KEY, "c1", 2000)
    assert len(good) == 64
    assert signature_problem(KEY, "c1", "2000", good, 2000.0) is None
    assert signature_problem(KEY, "c1", "2000", good.upper(), 1000.0) is None
    assert signature_problem(KEY, "c1", "2000", good, 2000.001) == "the link expired"
    assert signature_problem(KEY, "c1", "2001", good, 1000.0) == "the signature does not match"
    assert signature_problem(KEY, "c2", "2000", good, 1000.0) == "the signature does not match"
    assert signature_problem(b"other" * 8, "c1", "2000", good, 1000.0) == "the signature does not match"
    assert signature_problem(KEY, "c1", None, good, 1000.0) == "a signed link needs both expires and signature"
    assert signature_problem(KEY, "c1", "-5", good, 1000.0) == "expires must be Unix seconds"


def test_call_ended_links_only_recorded_answered_calls_under_public_url() -> None:
    call = Call("c1", 1000.0, answered_at=1002.0, recording="salara-rec-c1.wav")
    url = recording_url("https://pbx.example.com:5058/", KEY, call, 1010.4, 3600)
    assert url == "https://pbx.example.com:5058" + signed_path(KEY, "c1", 4610)
    assert recording_url("", KEY, call, 1010.0, 3600) is None
    assert recording_url("https://pbx", KEY, Call("c1", 1000.0, answered_at=1002.0), 1010.0, 3600) is None
    assert recording_url("https://pbx", KEY, Call("c1", 1000.0, recording="f.wav"), 1010.0, 3600) is None


def conf(tmp_path: Path, **recordings: str) -> config.Config:
    lines = "".join(f"{k}={v}\n" for k, v in recordings.items())
    text = (
        f"[general]\ndefault_context=phones\n[outbox]\npath={tmp_path / 'outbox.db'}\n"
        f"[api]\npublic_url=http://pbx.example.com:5058\n[recordings]\nmonitor_dir={tmp_path / 'monitor'}\n{lines}"
        + section("crm", TOKEN, rights="call,state,recordings")
        + section("other", NO_RIGHT, rights="call,state")
    )
    return config.build(config.parse_text(text))


def test_the_signing_key_is_made_once_private_and_kept_over_restarts(tmp_path: Path) -> None:
    cfg = conf(tmp_path)
    first = RecordingFiles(lambda: cfg)
    key = first.key()
    stored = tmp_path / "recordings.key"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert bytes.fromhex(stored.read_text().strip()) == key and len(key) == 32
    assert RecordingFiles(lambda: cfg).key() == key


def test_retention_deletes_only_salaras_own_files_older_than_the_retention(tmp_path: Path) -> None:
    cfg = conf(tmp_path, retention_days="2")
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    now = time.time()
    old, young = monitor / "salara-rec-c1.wav", monitor / "salara-rec-c2.WAV"
    foreign, odd = monitor / "someone-else.wav", monitor / "salara-rec-c3.txt"
    for path in (old, young, foreign, odd):
        path.write_bytes(b"RIFF")
    for path in (old, foreign, odd):
        os.utime(path, (now - 3 * 86400, now - 3 * 86400))
    files = RecordingFiles(lambda: cfg)
    assert files.sweep(now) == 1
    assert sorted(p.name for p in monitor.iterdir()) == ["salara-rec-c2.WAV", "salara-rec-c3.txt", "someone-else.wav"]
    assert RecordingFiles(lambda: conf(tmp_path)).sweep(now + 10 * 86400) == 0  # retention 0 keeps them


def test_retention_in_a_directory_it_may_not_write_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = conf(tmp_path, retention_days="1")
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    (monitor / "salara-rec-c1.wav").write_bytes(b"RIFF")
    os.utime(monitor / "salara-rec-c1.wav", (0, 0))

    # Root may write anywhere but in an immutable directory (EPERM); anyone else not in a read-only one (EACCES).
    def protect(on: bool) -> None:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i" if on else "-i", str(monitor)], check=True)
        else:
            monitor.chmod(0o555 if on else 0o755)

    protect(True)
    try:
        files = RecordingFiles(lambda: cfg)
        assert files.sweep(time.time()) == 0 and files.sweep(time.time()) == 0
    finally:
        protect(False)
    assert sum("cannot delete" in r.message for r in caplog.records) == 1


async def test_a_placed_call_asks_for_its_recording_by_the_request_or_the_default(tmp_path: Path) -> None:
    async def place(record: bool | None, **keys: str) -> Call:
        control = CallControl.over(FakeAMI(), conf(tmp_path, **keys))  # type: ignore[arg-type]
        call, _ = await control.place(PlaceCall("8001", "9001", "phones", record=record))
        return call

    assert (await place(None)).recording is None
    assert (await place(None, record_calls="yes")).recording is not None
    assert (await place(False, record_calls="yes")).recording is None
    call = await place(True, format="gsm")
    assert call.recording == f"salara-rec-{call.id}.gsm"


def client(cfg: config.Config, headers: dict[str, str] | None = None) -> tuple[httpx.AsyncClient, CallControl]:
    control = CallControl.over(FakeAMI(), cfg)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(create_app(control), client=LOCAL)
    return httpx.AsyncClient(transport=transport, base_url="http://salara", headers=headers), control


async def test_the_route_serves_ranges_to_the_right_and_signed_links_to_anyone(tmp_path: Path) -> None:
    cfg = conf(tmp_path, format="wav")
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    data = bytes(range(256)) * 4
    (monitor / "salara-rec-c1.wav").write_bytes(data)
    http, control = client(cfg)
    async with http:
        crm = {"authorization": f"Bearer {TOKEN}"}
        whole = await http.get("/v1/recordings/c1", headers=crm)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "audio/wav" and whole.headers["accept-ranges"] == "bytes"
        part = await http.get("/v1/recordings/c1", headers={**crm, "range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, data[10:20])
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
        beyond = await http.get("/v1/recordings/c1", headers={**crm, "range": "bytes=5000-"})
        assert beyond.status_code == 416
        other = await http.get("/v1/recordings/c1", headers={"authorization": f"Bearer {NO_RIGHT}"})
        assert other.status_code == 403
        assert (await http.get("/v1/recordings/c1")).status_code == 401
        missing = await http.get("/v1/recordings/c9", headers=crm)
        assert (missing.status_code, missing.json()["error"]) == (404, "recording_not_found")
        assert (await http.get("/v1/recordings/..", headers=crm)).status_code == 404
        # The signed link: no header at all.
        key = control.recordings.key()
        link = signed_path(key, "c1", int(time.time()) + 60)
        signed = await http.get(link)
        assert (signed.status_code, signed.content) == (200, data)
        for bad in (
            signed_path(key, "c1", int(time.time()) - 1),
            link.replace("c1?", "c2?"),
            link[:-1] + ("0" if link[-1] != "0" else "1"),
        ):
            refused = await http.get(bad)
            assert (refused.status_code, refused.json()["error"]) == (403, "link_refused"), bad
        # A live call's recording is not finished yet.
        control.registry.originated("c1", "8001", "9001", "phones", time.time())
        live = await http.get("/v1/recordings/c1", headers=crm)
        assert (live.status_code, live.json()["error"]) == (409, "recording_in_progress")


async def test_other_formats_are_found_with_their_content_type(tmp_path: Path) -> None:
    cfg = conf(tmp_path, format="gsm")
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    (monitor / "salara-rec-c1.WAV").write_bytes(b"x" * 10)  # recorded as wav49 before the format changed
    (monitor / "salara-rec-c2.gsm").write_bytes(b"y" * 10)
    http, _ = client(cfg, {"authorization": f"Bearer {TOKEN}"})
    async with http:
        assert (await http.get("/v1/recordings/c1")).headers["content-type"] == "audio/wav"
        assert (await http.get("/v1/recordings/c2")).headers["content-type"] == "audio/x-gsm"
