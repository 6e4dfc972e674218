"""No log or terminal injection, on the real test Asterisk: what came from outside is shown escaped.

A dialplan context of this test's own (added over AMI, removed afterwards)
gives a call a caller ID with a CR in it (``URIDECODE``) and sends another
to a FastAGI path with a percent-encoded LF; a CRM refuses events with CR/LF
and escape sequences in its answer. salara's log, ``salara events list`` and
``salara send command`` must show all of it escaped, one line each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from testpbx import pbx
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess
from tests.crm import FakeCrm

CONTROLS = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]} - {"\n"}
FORGED = "2026-12-01 10:15:00,000 ERROR salara.app: forged"
CONTEXT = f"salara-hardening-{os.getpid()}"
CALLER = "5554001"


def ami_ok(*lines: str) -> None:
    reply = pbx.ami_command(*lines)
    assert "Success" in reply, reply


def add_extension(exten: str, *steps: tuple[str, str]) -> None:
    for priority, (app, data) in enumerate(steps, 1):
        ami_ok(
            "Action: DialplanExtensionAdd",
            f"Context: {CONTEXT}",
            f"Extension: {exten}",
            f"Priority: {priority}",
            f"Application: {app}",
            f"ApplicationData: {data}",
            "Replace: yes",
        )


def call(exten: str) -> None:
    ami_ok(
        "Action: Originate",
        f"Channel: Local/{exten}@{CONTEXT}",
        f'CallerID: "Customer" <{CALLER}>',
        "Application: Wait",
        "Data: 20",
        "Async: true",
    )


@pytest.fixture
def dialplan(asterisk: None) -> Iterator[None]:
    yield
    # Only this test's calls and context: the PBX is shared.
    pbx.ami_command("Action: Hangup", f"Channel: /^Local/[0-9]+@{CONTEXT}-/")
    pbx.ami_command("Action: Command", f"Command: dialplan remove context {CONTEXT}")


def salara_run(salara: SalaraProcess, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "salara", "-c", str(salara.workdir / "salara.conf"), *args],
        capture_output=True,
        text=True,
        env=salara.env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def assert_clean(text: str) -> None:
    """One line per line: no control character but the line ends, no line forged."""
    assert not CONTROLS & set(text), sorted(CONTROLS & set(text))
    assert not [line for line in text.splitlines() if line.startswith(FORGED[:20])]


def test_a_cr_in_the_caller_id_and_a_newline_in_the_agi_path_are_escaped(
    salara_factory: SalaraFactory, dialplan: None
) -> None:
    crm = FakeCrm(routes={f"{CALLER}\r{FORGED}": "9002"}).start()
    try:
        text = EXAMPLE_CONFIG.read_text().replace(
            "dest_url=http://127.0.0.1:3000/call_center/incoming_call/check_is_org_only?phone=",
            f"dest_url={crm.url}/lookup?phone=",
        )
        salara = salara_factory(text)
        agi = f"agi://{salara.env['SALARA_AGI_LISTEN']}"
        forged = quote(FORGED, safe="")
        add_extension(
            "1",
            ("Set", f"CALLERID(num)=${{URIDECODE({CALLER}%0D{forged})}}"),
            ("AGI", f"{agi}/route?goto=no"),
            ("Wait", "20"),
        )
        add_extension("2", ("AGI", f"{agi}/route%0A{forged}%1B%5B2J"), ("Wait", "20"))
        call("1")
        wait_until(lambda: " via crm " in salara.log(), "the routed call's log line")
        call("2")
        wait_until(lambda: "is not known" in salara.log(), "the unknown script's log line")
        # The operator looks at the channels: Asterisk's output holds the raw CR.
        channels = salara_run(salara, "send", "command", "core", "show", "channels", "concise")
    finally:
        crm.stop()
    log = salara.log()
    assert_clean(log)
    assert f"callerid={CALLER}\\r{FORGED}" in log
    assert f"route {CALLER}\\r{FORGED} -> 9002 via crm" in log
    assert f"route\\n{FORGED}\\x1b[2J" in log
    assert_clean(channels)
    assert f"!{CALLER}\\r{FORGED}!" in channels


class RefusingCRM:
    """Answers every POST with 500 and a body full of control characters."""

    BODY = f"no\r\n{FORGED}\x1b[2J\x1b]0;owned\x07\u2028\x9b31m"
    SHOWN = f"no\\r\\n{FORGED}\\x1b[2J\\x1b]0;owned\\x07\\u2028\\x9b31m"

    def __init__(self) -> None:
        self.posts = 0
        crm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                crm.posts += 1
                body = crm.BODY.encode()
                self.send_response(500)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_crms_refusal_is_logged_and_listed_escaped(salara_factory: SalaraFactory, dialplan: None) -> None:
    crm = RefusingCRM()
    try:
        text = EXAMPLE_CONFIG.read_text().replace(
            "dest_url_event=http://127.0.0.1:3000/post", f"dest_url_event={crm.url}"
        )
        salara = salara_factory(text.replace("\nnewchannel=1\n", "\nnewchannel=2\n"))  # every channel's Newchannel
        add_extension("3", ("Wait", "20"))
        call("3")
        wait_until(lambda: crm.posts >= 1 and "did not take event" in salara.log(), "a refused event")
        listed = salara_run(salara, "events", "list")
    finally:
        crm.stop()
    log = salara.log()
    assert_clean(log)
    assert crm.SHOWN in log
    assert_clean(listed)
    rows = listed.splitlines()[1:]
    assert rows and all(f"last=HTTP 500: {crm.SHOWN} " in row for row in rows if " attempts=0 " not in row), rows
    assert any(json.dumps(CONTEXT)[1:-1] in row for row in rows)
