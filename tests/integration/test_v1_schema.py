"""Schema-driven fuzzing: schemathesis against ``/openapi.json`` of a salara on the real Asterisk.

Every operation but the never-ending ``/v1/events`` stream is exercised with
generated requests (valid and invalid), deterministically and with a fixed
budget; the run fails on any 5xx and on any response that breaks the schema
(status code, content type, headers, body). Calls it manages to place ring
phone 8001 for at most 2 s and end within seconds (9001 hangs up after 5 s);
any still live at the end are hung up.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from testpbx import pbx
from tests.conftest import SalaraFactory

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
MAX_EXAMPLES = 100
"""Test cases per operation and phase: the fixed budget (about 1,400 requests, ~10 s)."""


def test_schemathesis_finds_no_server_error_and_no_schema_violation(salara_factory: SalaraFactory) -> None:
    salara = salara_factory(SALARA_EVENT_TIMEOUT_MAKECALL="2", SALARA_URL_DEST_URL_EVENT="")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{salara.url}/openapi.json",
        "--checks",
        CHECKS,
        "--exclude-path",
        "/v1/events",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=salara.workdir)
    finally:
        hang_up_placed(salara.url)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert " passed" in output and "generated" in output, output[-2000:]


def hang_up_placed(url: str) -> None:
    """Hang up what the run placed, and wait until phone 8001 is free again."""
    try:
        calls = httpx.get(f"{url}/v1/calls", timeout=10).json().get("calls", [])
    except (httpx.HTTPError, ValueError):
        calls = []
    for call in calls:
        if call.get("placed_by_salara"):
            httpx.delete(f"{url}/v1/calls/{call['id']}", timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "\r\nStatus: 0\r\n" in pbx.ami_command("Action: ExtensionState", "Exten: 8001", "Context: phones"):
            break
        time.sleep(0.2)
