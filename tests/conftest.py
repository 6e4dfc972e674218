"""Shared fixtures: the test Asterisk, a salara process, AMI watchers."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from testpbx import pbx
from tests.amiwatch import AMIRecorder, EventWatch
from tests.pbxb import pbx_b  # noqa: F401 - the second test Asterisk (instance b), a session fixture

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "salara.conf.example"


_HANDED_OUT: set[int] = set()
"""Ports free_port gave this session: the kernel may offer a just-closed port again."""


def free_port() -> int:
    """A loopback TCP port nothing listens on, never one this session was given before."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no loopback port left that this session was not given already")


@pytest.fixture(scope="session")
def asterisk() -> Iterator[None]:
    """The project's test Asterisk and phone 8001, started once per test session."""
    if not pbx.is_built():
        pytest.fail("the test PBX is not built: run ./scripts/setup.sh (as root) first")
    already_running = pbx.status()["asterisk"]
    pbx.start()
    yield
    if not already_running:  # leave a PBX someone else started as it was
        pbx.stop()


@pytest.fixture
def ami_events(asterisk: None) -> Iterator[EventWatch]:
    watch = EventWatch()
    yield watch
    watch.close()


@pytest.fixture
def ami_recorder(asterisk: None) -> Iterator[AMIRecorder]:
    recorder = AMIRecorder()
    yield recorder
    recorder.close()


class SalaraProcess:
    """``salara serve`` run as a real process on free loopback ports."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.port = int(env["SALARA_URL_REST_SERVER"].rpartition(":")[2])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "salara.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}
        self.verify: ssl.SSLContext | bool = True
        """TLS verification for :meth:`start` and :meth:`post` (set ``url`` to https:// too)."""
        """Sent with the readiness probe and :meth:`post` (e.g. an API token)."""
        self.secrets: set[str] = configured_secrets((workdir / "salara.conf").read_text(), env)
        """Values that must never appear in this process's log (checked when the fixture ends)."""

    def start(self, wait_ready: bool = True) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "salara", "-c", str(self.workdir / "salara.conf"), "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"salara exited early:\n{self.log()}")
            try:
                path = "/ready" if wait_ready else "/health"
                if httpx.get(self.url + path, timeout=1, headers=self.headers, verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"salara did not become ready:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post(self, body: object, path: str = "/") -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=15, headers=self.headers, verify=self.verify)

    def leaked_secrets(self) -> list[str]:
        text = self.log()
        return sorted(f"{secret[:2]}..." for secret in self.secrets if secret in text)  # never print one whole


def configured_secrets(config_text: str, env: dict[str, str]) -> set[str]:
    """The AMI secrets (every PBX's) and webhook secret a salara process is given (file and environment)."""
    from salara.config import parse_text

    sections = parse_text(config_text).sections
    found = {
        *(values.get("secret", "") for name, values in sections.items() if name.startswith("ami ")),
        *(value for key, value in env.items() if key.startswith("SALARA_AMI_") and key.endswith("_SECRET")),
        sections.get("ami", {}).get("secret", ""),
        sections.get("url", {}).get("webhook_secret", ""),
        env.get("SALARA_AMI_SECRET", ""),
        env.get("SALARA_URL_WEBHOOK_SECRET", ""),
    }
    return {secret for secret in found if len(secret) >= 6}


SalaraFactory = Callable[..., SalaraProcess]


@pytest.fixture
def salara_factory(asterisk: None, tmp_path: Path) -> Iterator[SalaraFactory]:
    """Start salara processes: ``factory(config_text=None, **env_overrides)``.

    Env keys are ``SALARA_<SECTION>_<KEY>`` overrides; the API and FastAGI ports
    default to free loopback ports.
    """
    started: list[SalaraProcess] = []

    def factory(config_text: str | None = None, start: bool = True, **overrides: str) -> SalaraProcess:
        workdir = tmp_path / f"salara{len(started)}"
        workdir.mkdir()
        conf = workdir / "salara.conf"
        conf.write_text(config_text if config_text is not None else EXAMPLE_CONFIG.read_text())
        conf.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SALARA_")}
        env.update(
            {
                "SALARA_URL_REST_SERVER": f"127.0.0.1:{free_port()}",
                "SALARA_AGI_LISTEN": f"127.0.0.1:{free_port()}",
                "SALARA_OUTBOX_PATH": str(workdir / "outbox.db"),
                "SALARA_EVENT_VERBOSE": "2",
            }
        )
        env.update(overrides)
        process = SalaraProcess(workdir, env)
        started.append(process)
        if start:
            process.start()
        return process

    yield factory
    for process in started:
        process.stop()
    leaks = {str(process.log_path): process.leaked_secrets() for process in started}
    assert not any(leaks.values()), f"secrets in salara's log: {leaks}"
