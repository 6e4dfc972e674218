"""``[general] log_format``: JSON lines, and text with syslog priorities on the journal's stream.

The formatters on records made here, then a real ``salara serve`` (AMI
down, so it logs warnings at once) whose stderr is a file: with
``log_format = json`` every line of it parses as one JSON object, from the
config warning logged while loading to the last line; with ``text`` and
``JOURNAL_STREAM`` naming that file every line starts with ``<N>``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from salara.logformat import CALL_ID, JournalFormatter, JsonFormatter, TextFormatter, formatter_for
from tests.conftest import free_port

WAIT_S = 20.0


def record(
    level: int = logging.WARNING, msg: str = "route %s", args: tuple[object, ...] = ("5551001",)
) -> logging.LogRecord:
    return logging.LogRecord("salara.routing.script", level, __file__, 1, msg, args, None)


def test_json_has_time_level_logger_message_and_the_call_id() -> None:
    line = JsonFormatter().format(record())
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message"}
    assert (entry["level"], entry["logger"], entry["message"]) == ("WARNING", "salara.routing.script", "route 5551001")
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"
    token = CALL_ID.set(lambda: "salara-80e54b6ae6dc")
    try:
        assert json.loads(JsonFormatter().format(record()))["call_id"] == "salara-80e54b6ae6dc"
    finally:
        CALL_ID.reset(token)
    given = record()
    given.call_id = "1796167304.12"
    assert json.loads(JsonFormatter().format(given))["call_id"] == "1796167304.12"


def test_json_keeps_a_traceback_and_odd_text_on_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        failed = logging.LogRecord(
            "salara.app", logging.ERROR, __file__, 1, "caller %s\u2028x", ("\x1b[31m",), sys.exc_info()
        )
    line = JsonFormatter().format(failed)
    assert line.isascii() and len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["message"] == "caller \x1b[31m\u2028x"
    assert "RuntimeError: boom" in entry["exception"]


def test_journal_text_starts_every_line_with_the_syslog_priority() -> None:
    formatter = JournalFormatter()
    levels = {logging.CRITICAL: "<2>", logging.ERROR: "<3>", logging.WARNING: "<4>", logging.INFO: "<6>"}
    for level, prefix in {**levels, logging.DEBUG: "<7>"}.items():
        assert (
            formatter.format(record(level))
            == f"{prefix}{logging.getLevelName(level)} salara.routing.script: route 5551001"
        )
    multi = formatter.format(record(logging.ERROR, "two\nlines", ()))
    assert multi.splitlines() == ["<3>ERROR salara.routing.script: two", "<3>lines"]


def test_text_is_as_before_and_names_the_call() -> None:
    plain = TextFormatter().format(record())
    assert plain.endswith(" WARNING salara.routing.script: route 5551001") and plain[4] == "-"
    token = CALL_ID.set(lambda: "salara-1")
    try:
        assert TextFormatter().format(record()).endswith("salara.routing.script: [call salara-1] route 5551001")
        assert CALL_ID.get() is not None
    finally:
        CALL_ID.reset(token)
    assert isinstance(formatter_for("text", journal=True), JournalFormatter)
    assert isinstance(formatter_for("json", journal=True), JsonFormatter)  # JSON stays JSON on the journal


def run_serve(tmp_path: Path, log_format: str, *, journal: bool) -> list[str]:
    """Run ``salara serve`` (AMI down), ask /health, reload it, stop it; its stderr lines."""
    api = free_port()
    conf = tmp_path / "salara.conf"
    conf.write_text(
        f"[general]\nlog_format = {log_format}\nunknown_key = 1\n[event]\nverbose = 2\n"
        f"[url]\nrest_server = 127.0.0.1:{api}\n[agi]\nlisten = 127.0.0.1:{free_port()}\n"
        f"[ami]\nport = {free_port()}\nreconnect_max = 0.2\n"
    )
    conf.chmod(0o600)
    err_path = tmp_path / "stderr.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SALARA_", "JOURNAL_", "NOTIFY_"))}
    with err_path.open("wb") as err:
        if journal:
            info = os.fstat(err.fileno())
            env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "salara", "-c", str(conf), "serve"], env=env, stdout=err, stderr=err
        )
        try:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:  # serving (SIGHUP is handled from before the API listens)
                try:
                    if httpx.get(f"http://127.0.0.1:{api}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            proc.send_signal(signal.SIGHUP)
            while "config reloaded" not in err_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return err_path.read_text().splitlines()


def test_salara_serve_with_log_format_json_writes_only_json_lines(tmp_path: Path) -> None:
    lines = run_serve(tmp_path, "json", journal=True)
    entries = [json.loads(line) for line in lines]  # every line, or this raises
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    messages = [entry["message"] for entry in entries]
    assert "unknown_key: is not a salara setting" in messages[0]  # logged while loading, as JSON too
    assert any(message.startswith("config reloaded from ") for message in messages)
    assert any(entry["logger"] == "uvicorn.access" for entry in entries)  # verbose = 2: the access log
    assert messages[-1] == "salara stopped"


def test_salara_serve_text_on_the_journal_stream_has_priority_prefixes(tmp_path: Path) -> None:
    lines = run_serve(tmp_path, "text", journal=True)
    assert lines and all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in lines), lines
    assert any(line.startswith("<4>WARNING salara.config: ") for line in lines)
    assert any(line.startswith("<6>INFO salara.reload: config reloaded from ") for line in lines)


def test_salara_serve_text_elsewhere_has_no_prefixes(tmp_path: Path) -> None:
    lines = run_serve(tmp_path, "text", journal=False)
    assert lines and not any(line.startswith("<") for line in lines)
    assert any(" INFO salara.reload: config reloaded from " in line for line in lines)
