"""API benchmark: compat extension-state requests against the real Asterisk.

Run from the repository root (the test PBX running)::

    python -m bench.api --duration 10 --clients 50

Three measurements in one run:

- **raw**: the baseline, AMI ``ExtensionState`` round trips over a plain
  blocking socket (one logged-in session, ``Events: off``, one action at a
  time), no salara involved;
- **50 clients**: ``POST / {"exten":"9001"}`` from ``--clients`` keep-alive
  HTTP/1.1 connections, each sending its next request as soon as the answer
  arrived (closed loop), for ``--duration`` seconds after a short warm-up;
- **1 client**: the same with one connection, i.e. salara's own latency over
  the raw round trip with no queueing.

salara runs as its own process (``salara -c <conf> serve``, a copy of
``salara.conf.example`` on free loopback ports); the load generator is this
process: raw asyncio protocols on uvloop when available, requests prebuilt as
bytes, answers framed by ``content-length`` only, so it costs a fraction of
what salara spends per request.

With a closed loop of N clients, Little's law ties the figures together:
p50 is about N / (requests/s), so the 50-client p50 measures queueing at
salara's throughput; the 1-client p50 measures what salara adds to a request.

This module also holds the helpers the other benchmarks share: a plain AMI
client (:class:`RawAMI`), a salara process (:class:`SalaraServer`) and
:func:`percentile`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "salara.conf.example"

AMI_HOST = "127.0.0.1"
AMI_PORT = 5038
AMI_USER = "crm"
AMI_SECRET = "crmsecret"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of an already sorted sequence (nearest rank); NaN if empty."""
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index]


@dataclass(frozen=True)
class Latencies:
    """Round trips measured over a fixed time: count, rate and quantiles (seconds)."""

    count: int
    seconds: float
    p50_s: float
    p99_s: float
    errors: int = 0
    client_cpu: float = float("nan")
    """CPU seconds the measuring process used per wall second (1.0 = one core busy)."""

    @property
    def rate(self) -> float:
        """Round trips per second."""
        return self.count / self.seconds if self.seconds else float("nan")

    @classmethod
    def of(cls, samples: list[float], seconds: float, errors: int = 0, cpu_s: float = float("nan")) -> Latencies:
        """From raw samples (seconds) taken over ``seconds``, the measurer having used ``cpu_s``."""
        ordered = sorted(samples)
        p50, p99 = percentile(ordered, 0.5), percentile(ordered, 0.99)
        return cls(len(ordered), seconds, p50, p99, errors, cpu_s / seconds if seconds else float("nan"))

    def line(self, label: str) -> str:
        """One human-readable line."""
        errors = f", {self.errors} errors" if self.errors else ""
        return (
            f"{label:<22} {self.count:>8,} in {self.seconds:5.1f} s = {self.rate:>8,.0f}/s"
            f"  p50 {self.p50_s * 1e3:7.3f} ms  p99 {self.p99_s * 1e3:7.3f} ms"
            f"  (measurer CPU {self.client_cpu:.0%}){errors}"
        )


# -- plain AMI ---------------------------------------------------------------------------------------------------


class RawAMI:
    """A deliberately plain blocking AMI client: one session, one action at a time, events off."""

    def __init__(
        self, host: str = AMI_HOST, port: int = AMI_PORT, user: str = AMI_USER, secret: str = AMI_SECRET
    ) -> None:
        self._sock = socket.create_connection((host, port), timeout=5)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        self._next_id = 0
        self._read_until(b"\r\n")  # greeting
        reply = self.action("Login", Username=user, Secret=secret, Events="off")
        if reply.get("Response") != "Success":
            raise ConnectionError(f"AMI login failed: {reply.get('Message')}")

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("AMI closed the connection")
            self._buffer += data
        head, self._buffer = self._buffer[:end], self._buffer[end + len(marker) :]
        return head

    def request(self, payload: bytes) -> bytes:
        """Send prebuilt action bytes (ending in the blank line) and return the next message, raw."""
        self._sock.sendall(payload)
        return self._read_until(b"\r\n\r\n")

    def action(self, name: str, **fields: str) -> dict[str, str]:
        """Send one action and return its response's headers (the first of each name)."""
        self._next_id += 1
        action_id = f"b{self._next_id}"
        lines = [f"Action: {name}", f"ActionID: {action_id}", *(f"{k}: {v}" for k, v in fields.items())]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while True:
            headers: dict[str, str] = {}
            for line in self._read_until(b"\r\n\r\n").decode(errors="replace").split("\r\n"):
                name_, _, value = line.partition(": ")
                headers.setdefault(name_, value)
            if headers.get("ActionID") == action_id:
                return headers

    def close(self) -> None:
        """Log off and close the socket."""
        with suppress(OSError):
            self._sock.sendall(b"Action: Logoff\r\n\r\n")
        self._sock.close()


def asterisk_version() -> str | None:
    """The Asterisk version from AMI ``CoreSettings``, or None if AMI is not reachable."""
    try:
        ami = RawAMI()
    except OSError:
        return None
    try:
        return ami.action("CoreSettings").get("AsteriskVersion")
    finally:
        ami.close()


def raw_round_trips(duration_s: float, exten: str = "9001", context: str = "phones") -> Latencies:
    """Sequential AMI ``ExtensionState`` round trips on one plain socket for ``duration_s`` seconds."""
    ami = RawAMI()
    payload = f"Action: ExtensionState\r\nActionID: x\r\nExten: {exten}\r\nContext: {context}\r\n\r\n".encode()
    clock = time.perf_counter
    samples: list[float] = []
    errors = 0
    try:
        for _ in range(100):  # warm-up
            ami.request(payload)
        start, cpu = clock(), time.process_time()
        stop_at = start + duration_s
        now = start
        while now < stop_at:
            reply = ami.request(payload)
            done = clock()
            samples.append(done - now)
            if not reply.startswith(b"Response: Success"):
                errors += 1
            now = done
        return Latencies.of(samples, now - start, errors, time.process_time() - cpu)
    finally:
        ami.close()


# -- a salara process --------------------------------------------------------------------------------------------


class SalaraServer:
    """``salara -c <conf> serve`` as a subprocess on free loopback ports, in a temporary directory.

    ``edit`` rewrites the example config's text; ``env`` adds ``SALARA_*`` overrides.
    """

    def __init__(
        self,
        edit: Callable[[str], str] | None = None,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.prefix = list(prefix)
        """A command salara runs under (``valgrind ...``), or nothing."""
        self._tmp = tempfile.TemporaryDirectory(prefix="salara-bench-")
        self.workdir = Path(self._tmp.name)
        text = EXAMPLE_CONFIG.read_text()
        conf = self.workdir / "salara.conf"
        conf.write_text(edit(text) if edit else text)
        conf.chmod(0o600)
        self.api_port = free_port()
        self.agi_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SALARA_")}
        self.env.update(
            {
                "SALARA_URL_REST_SERVER": f"127.0.0.1:{self.api_port}",
                "SALARA_AGI_LISTEN": f"127.0.0.1:{self.agi_port}",
                "SALARA_OUTBOX_PATH": str(self.workdir / "outbox.db"),
                "SALARA_EVENT_VERBOSE": "0",
                **(env or {}),
            }
        )
        self.log_path = self.workdir / "salara.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 20) -> None:
        """Start salara and wait until ``GET /ready`` answers 200."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "salara", "-c", str(self.workdir / "salara.conf"), "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"salara exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"salara did not become ready within {timeout_s} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s), then remove the temporary directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._tmp.cleanup()

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) salara has used so far, from ``/proc/<pid>/stat``."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> SalaraServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the HTTP load generator -------------------------------------------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending ``request`` again as soon as each answer is complete."""

    def __init__(self, request: bytes, stop_at: float, samples: list[float], done: asyncio.Future[None]) -> None:
        self.request = request
        self.stop_at = stop_at
        self.samples = samples
        self.done = done
        self.errors = 0
        self.first_answer: bytes | None = None
        self._ok = True
        self._buffer = b""
        self._need = 0  # bytes of the current answer (head + body), 0 while the head is incomplete
        self._sent_at = 0.0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        now = time.perf_counter()
        if now >= self.stop_at:
            self._transport.close()
            return
        self._sent_at = now
        self._transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if not self._need:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self._buffer[:end].lower()
                at = head.index(b"content-length:") + 15
                line_end = head.find(b"\r\n", at)
                self._need = end + 4 + int(head[at : line_end if line_end >= 0 else end])
                self._ok = head[9:12] == b"200"
            if len(self._buffer) < self._need:
                return
            self.samples.append(time.perf_counter() - self._sent_at)
            if not self._ok:
                self.errors += 1
            if self.first_answer is None:
                self.first_answer = self._buffer[: self._need]
            self._buffer = self._buffer[self._need :]
            self._need = 0
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(port: int, request: bytes, clients: int, duration_s: float) -> tuple[Latencies, bytes]:
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    start, cpu = time.perf_counter(), time.process_time()
    stop_at = start + duration_s
    protocols = []
    for _ in range(clients):
        done: asyncio.Future[None] = loop.create_future()
        _, protocol = await loop.create_connection(
            lambda done=done: _Client(request, stop_at, samples, done),  # type: ignore[misc]
            "127.0.0.1",
            port,
        )
        protocols.append(protocol)
    async with asyncio.timeout(duration_s + 30):
        await asyncio.gather(*(p.done for p in protocols))
    elapsed = time.perf_counter() - start
    errors = sum(p.errors for p in protocols)
    first = next((p.first_answer for p in protocols if p.first_answer), b"")
    return Latencies.of(samples, elapsed, errors, time.process_time() - cpu), first.partition(b"\r\n\r\n")[2]


def http_load(port: int, body: bytes, clients: int, duration_s: float) -> tuple[Latencies, bytes]:
    """``clients`` closed-loop keep-alive connections POSTing ``body`` for ``duration_s`` seconds.

    Returns the latencies and the body of one answer (for a sanity check).
    Runs its own event loop (uvloop when installed).
    """
    request = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_load(port, request, clients, duration_s))
    return uvloop.run(_load(port, request, clients, duration_s))


# -- the benchmark -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResult:
    """Figures of one API benchmark run (latencies in seconds)."""

    raw: Latencies
    loaded: Latencies
    single: Latencies
    clients: int
    answer: str
    salara_cpu: float
    """CPU seconds salara used per wall second under the ``clients`` load (1.0 = one core)."""

    @property
    def ratio(self) -> float:
        """salara's requests/s over the raw sequential AMI round trips/s."""
        return self.loaded.rate / self.raw.rate


@contextmanager
def profiled(pid: int, svg: str | None) -> Iterator[None]:
    """Run ``py-spy record`` on ``pid`` meanwhile, if ``svg`` names an output file (``.txt``: collapsed stacks)."""
    if not svg:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    form = "raw" if svg.endswith(".txt") else "flamegraph"
    command = [str(spy), "record", "-o", svg, "-f", form, "--pid", str(pid)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def run(
    duration_s: float = 10.0,
    clients: int = 50,
    exten: str = "9001",
    context: str = "phones",
    profile_svg: str | None = None,
) -> ApiResult:
    """Measure raw AMI round trips, then salara under ``clients`` and under one client."""
    raw = raw_round_trips(min(duration_s, 3.0), exten, context)
    body = json.dumps({"exten": exten, "context": context}).encode()
    with SalaraServer() as salara:
        http_load(salara.api_port, body, clients, min(1.0, duration_s / 5))  # warm-up
        cpu = salara.cpu_seconds()
        with profiled(salara.pid, profile_svg):
            loaded, answer = http_load(salara.api_port, body, clients, duration_s)
        salara_cpu = (salara.cpu_seconds() - cpu) / loaded.seconds
        single, _ = http_load(salara.api_port, body, 1, min(duration_s, 3.0))
    return ApiResult(raw, loaded, single, clients, answer.decode(errors="replace"), salara_cpu)


def report(result: ApiResult) -> None:
    """Print the figures."""
    print(result.raw.line("raw AMI round trip"))
    print(result.loaded.line(f"salara, {result.clients} clients"))
    print(result.single.line("salara, 1 client"))
    print(f"answer: {result.answer}; salara's CPU under {result.clients} clients: {result.salara_cpu:.0%} of a core")
    print(f"ratio salara req/s / raw round trips/s: {result.ratio:.2f}")
    for label, lat in ((f"{result.clients} clients", result.loaded), ("1 client", result.single)):
        print(f"p50 ({label}) within {(lat.p50_s - result.raw.p50_s) * 1e3:.2f} ms of the raw round trip")


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bench.api [--duration S] [--clients N] [--profile out.svg]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent keep-alive clients (default 50)")
    parser.add_argument("--exten", default="9001", help="extension asked for (default 9001)")
    parser.add_argument("--context", default="phones", help="its context (default phones)")
    parser.add_argument(
        "--profile", metavar="SVG", help="py-spy flame graph (.svg) or collapsed stacks (.txt) of salara under load"
    )
    args = parser.parse_args(argv)
    report(run(args.duration, args.clients, args.exten, args.context, args.profile))


if __name__ == "__main__":
    main()
