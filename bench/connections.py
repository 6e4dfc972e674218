"""Connection-per-request and keep-alive benchmark of the compat endpoint, beside a bare ASGI app, in one run.

Run from the repository root (the test PBX running; ``wrk`` installed, as
``scripts/setup.sh`` does)::

    python -m bench.connections --duration 10

Both servers run at the same time, each in its own process: salara
(``salara serve`` on a copy of ``salara.conf.example``) answering
``POST / {"exten":"9001"}`` with a real AMI ``ExtensionState``, and the
bare app (:mod:`bench.bare`: the same answer, no AMI, no middleware) on
the same uvicorn settings. Three measurements each:

- **connection per request, 20 clients**: ``wrk -t2 -c20`` with
  ``Connection: close`` (what the old module made every CRM do: it
  closed the connection after each answer), closed loop;
- **keep-alive, 20 clients**: the same without ``Connection: close``;
- **connection per request, 1 client**: one client, sequential: connect,
  send, read the answer, close; the latency is from the connect to the
  last byte of the answer (wrk's excludes the connect).

wrk runs one server at a time; its latency is from the request's write to
the answer (closed loop: p50 is about clients / rate, Little's law). The
ratio salara / bare in the same run is what salara keeps of its server
stack. Figures are never asserted on by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.api import REPO, Latencies, SalaraServer, free_port
from bench.table import Row, ms, yes

BODY = b'{"exten":"9001"}'
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
WRK_SCRIPT = f'wrk.method = "POST"\nwrk.body = \'{BODY.decode()}\'\nwrk.headers["Content-Type"] = "application/json"\n'


class BareServer:
    """:mod:`bench.bare` as a subprocess on a free loopback port (``with``: started, then stopped)."""

    def __init__(self, prefix: Sequence[str] = (), timeout_s: float = 20) -> None:
        self.port = free_port()
        self.prefix = list(prefix)
        """A command the app runs under (``valgrind ...``), or nothing."""
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> BareServer:
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "bench.bare", "--port", str(self.port)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"the bare app did not answer within {self.timeout_s:g} s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Load:
    """One closed-loop load: latencies (seconds), errors, CPU per wall second of the server and of the generator."""

    latencies: Latencies
    server_cpu: float
    generator_cpu: float
    command: str

    @property
    def rate(self) -> float:
        return self.latencies.rate

    @property
    def cpu_per_request_s(self) -> float:
        """The server's CPU seconds per answered request: steadier than a rate on a shared machine."""
        return self.server_cpu / self.rate if self.rate else float("nan")


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> tuple[int, float, float, float, int]:
    """(requests, seconds, p50 s, p99 s, errors) from ``wrk --latency`` output; errors: socket errors and non-2xx."""
    done = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (done and p50 and p99):
        raise RuntimeError(f"wrk's output not understood:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    seconds = float(done.group(2)) * _UNITS[done.group(3)]
    return int(done.group(1)), seconds, _seconds(p50.group(1)), _seconds(p99.group(1)), errors


def wrk(port: int, pid: int, *, clients: int, threads: int, duration_s: float, close: bool) -> Load:
    """``wrk`` POSTing :data:`BODY` to 127.0.0.1:``port`` (server process ``pid``), new connections if ``close``."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; scripts/setup.sh does)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    header = ["-H", "Connection: close"] if close else []
    seconds = max(1, round(duration_s))
    command = [path, f"-t{threads}", f"-c{clients}", f"-d{seconds}s", "--latency", *header, "-s", script.name]
    shown = (
        " ".join([*command[:-2], "-s", "post.lua"])
        .replace(path, "wrk")
        .replace("Connection: close", "'Connection: close'")
    )
    try:
        before_server = process_cpu_seconds(pid)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        output = subprocess.run(
            [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
        ).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server = process_cpu_seconds(pid) - before_server
    finally:
        os.unlink(script.name)
    count, wall, p50, p99, errors = parse_wrk(output)
    generator = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Load(Latencies(count, wall, p50, p99, errors, generator / wall), server / wall, generator / wall, shown)


def one_client(port: int, duration_s: float) -> Latencies:
    """One client, sequential, a new connection per request: connect to answer, for ``duration_s`` seconds."""
    request = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )
    clock = time.perf_counter
    samples: list[float] = []
    errors = 0
    for _ in range(50):  # warm-up
        _exchange(port, request)
    start, cpu = clock(), time.process_time()
    stop_at = start + duration_s
    now = start
    while now < stop_at:
        ok = _exchange(port, request)
        done = clock()
        samples.append(done - now)
        errors += not ok
        now = done
    return Latencies.of(samples, now - start, errors, time.process_time() - cpu)


def _exchange(port: int, request: bytes) -> bool:
    """Connect, send ``request``, read one answer (framed by content-length); whether it was a 200."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        return read_answer(sock)


def read_answer(sock: socket.socket, status: bytes = b"200") -> bool:
    """Read one answer from ``sock`` (framed by its content-length); whether its status was ``status``."""
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    length = CONTENT_LENGTH.search(data, 0, end)
    need = end + 4 + (int(length.group(1)) if length else 0)
    while len(data) < need:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    return data.startswith(b"HTTP/1.1 " + status)


@dataclass(frozen=True)
class ServerFigures:
    """One server's three measurements."""

    close: Load
    keep_alive: Load
    single: Latencies


@dataclass(frozen=True)
class ConnectionsResult:
    """salara's and the bare app's figures from one run."""

    salara: ServerFigures
    bare: ServerFigures
    clients: int
    answer: str

    def ratio(self, kind: str) -> float:
        """salara's requests/s over the bare app's, ``kind`` ``close`` or ``keep_alive``."""
        ours: Load = getattr(self.salara, kind)
        theirs: Load = getattr(self.bare, kind)
        return ours.rate / theirs.rate if theirs.rate else float("nan")


def _measure(port: int, pid: int, clients: int, duration_s: float) -> ServerFigures:
    threads = min(2, clients)
    close = wrk(port, pid, clients=clients, threads=threads, duration_s=duration_s, close=True)
    keep_alive = wrk(port, pid, clients=clients, threads=threads, duration_s=duration_s, close=False)
    return ServerFigures(close, keep_alive, one_client(port, min(duration_s, 3.0)))


def run(duration_s: float = 10.0, clients: int = 20, rounds: int = 1) -> list[ConnectionsResult]:
    """salara and the bare app, both started for this run; each measured with the same loads, in turn, ``rounds`` times.

    Alternating the two servers round by round puts both under much the same
    load from the rest of a shared machine: compare the rounds' ratios (their
    median), not one server's best against the other's worst.
    """
    results = []
    with SalaraServer() as salara, BareServer() as bare:
        for port, pid in ((salara.api_port, salara.pid), (bare.port, bare.pid)):  # warm-up
            wrk(port, pid, clients=clients, threads=min(2, clients), duration_s=1, close=False)
        try:
            with urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{salara.api_port}/", data=BODY), timeout=5
            ) as answer:
                text = answer.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:  # what salara said of it goes with the temporary directory
            raise RuntimeError(f"salara answered the request {exc.code}; its log:\n{salara.log()[-8000:]}") from exc
        for _ in range(rounds):
            ours = _measure(salara.api_port, salara.pid, clients, duration_s)
            theirs = _measure(bare.port, bare.pid, clients, duration_s)
            results.append(ConnectionsResult(ours, theirs, clients, text))
    return results


def median_round(results: list[ConnectionsResult], kind: str) -> ConnectionsResult:
    """The round whose ``kind`` figure is the median: ``close`` or ``keep_alive`` (ratio), ``single`` (salara p50)."""

    def key(result: ConnectionsResult) -> float:
        return result.salara.single.p50_s if kind == "single" else result.ratio(kind)

    return sorted(results, key=key)[(len(results) - 1) // 2]


def report(result: ConnectionsResult) -> None:
    """Print the figures."""
    for name, figures in (("salara", result.salara), ("bare", result.bare)):
        print(
            figures.close.latencies.line(f"{name}, close, {result.clients}"),
            f"server CPU {figures.close.server_cpu:.0%}",
        )
        print(
            figures.keep_alive.latencies.line(f"{name}, keep-alive, {result.clients}"),
            f"server CPU {figures.keep_alive.server_cpu:.0%}",
        )
        print(figures.single.line(f"{name}, close, 1 client"))
        print(
            f"{name}: CPU per request {figures.close.cpu_per_request_s * 1e6:.0f} µs (new connection), "
            f"{figures.keep_alive.cpu_per_request_s * 1e6:.0f} µs (keep-alive)"
        )
    print(f"ratios salara / bare: close {result.ratio('close'):.2f}, keep-alive {result.ratio('keep_alive'):.2f}")
    print(f"answer: {result.answer}; wrk: {result.salara.close.command} URL")


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bench.connections [--duration S] [--clients N] [--rounds R] [--json]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.connections", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk load (default 10)")
    parser.add_argument("--clients", type=int, default=20, help="wrk connections (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of salara then bare (default 3)")
    parser.add_argument("--json", action="store_true", help="the median ratios as one JSON line too")
    args = parser.parse_args(argv)
    results = run(args.duration, args.clients, args.rounds)
    for number, result in enumerate(results, 1):
        print(f"-- round {number} of {len(results)}")
        report(result)
    close, keep = median_round(results, "close").ratio("close"), median_round(results, "keep_alive").ratio("keep_alive")
    single = median_round(results, "single").salara.single
    print(
        f"median of {len(results)} rounds: close {close:.2f}, keep-alive {keep:.2f}, "
        f"salara 1 client p50 {ms(single.p50_s)}"
    )
    if args.json:
        print(json.dumps({"close": close, "keep_alive": keep, "single_p50_s": single.p50_s}))


if __name__ == "__main__":
    main()


def rows(duration_s: float, notes: list[str], rounds: int = 3) -> list[Row]:
    """``make bench``'s rows: connection per request (20 clients, 1 client) and keep-alive, salara against bare.

    Each row is the median of ``rounds`` rounds (:func:`median_round`); the notes list every round's ratios.
    """
    results = run(duration_s, rounds=rounds)
    result = median_round(results, "close")
    keep_round, single_round = median_round(results, "keep_alive"), median_round(results, "single")
    ours, theirs = result.salara, result.bare
    close, keep = result.ratio("close"), keep_round.ratio("keep_alive")

    def figure(load: Load) -> str:
        return f"{load.rate:,.0f} req/s, p50 {ms(load.latencies.p50_s)}, p99 {ms(load.latencies.p99_s)}"

    clean = not any(r.salara.close.latencies.errors or r.salara.keep_alive.latencies.errors for r in results)
    clean = clean and not any(r.salara.single.errors for r in results)
    table = [
        Row(
            f"API connection per request, {result.clients} clients (wrk)",
            figure(ours.close),
            f"bare ASGI app {figure(theirs.close)}",
            f"{close:.2f}",
            "≥ 0.8 × bare, p99 ≤ 5 ms",
            yes(close >= 0.8 and ours.close.latencies.p99_s <= 0.005 and clean),
        ),
        Row(
            f"API keep-alive, {result.clients} clients (wrk)",
            figure(keep_round.salara.keep_alive),
            f"bare ASGI app {figure(keep_round.bare.keep_alive)}",
            f"{keep:.2f}",
            "≥ 0.5 × bare",
            yes(keep >= 0.5 and clean),
        ),
        Row(
            "API connection per request, 1 client",
            f"p50 {ms(single_round.salara.single.p50_s)}, p99 {ms(single_round.salara.single.p99_s)}",
            f"bare ASGI app p50 {ms(single_round.bare.single.p50_s)}, p99 {ms(single_round.bare.single.p99_s)}",
            f"{single_round.salara.single.p50_s / single_round.bare.single.p50_s:.2f}",
            "p50 ≤ 0.4 ms",
            yes(single_round.salara.single.p50_s <= 0.0004 and clean),
        ),
    ]
    closes = ", ".join(f"{r.ratio('close'):.2f}" for r in results)
    keeps = ", ".join(f"{r.ratio('keep_alive'):.2f}" for r in results)
    singles = ", ".join(ms(r.salara.single.p50_s) for r in results)
    notes.append(
        f"Connections: `{ours.close.command}` and the same without `-H`, on salara then on the bare app "
        f"(`python -m bench.bare`), both running; salara used {ours.close.server_cpu:.0%} of a core with a new "
        f"connection per request and {ours.keep_alive.server_cpu:.0%} with keep-alive, the bare app "
        f"{theirs.close.server_cpu:.0%} and {theirs.keep_alive.server_cpu:.0%}, wrk {ours.close.generator_cpu:.0%}"
        f"-{theirs.close.generator_cpu:.0%}. CPU per request, new connection / keep-alive: salara "
        f"{ours.close.cpu_per_request_s * 1e6:.0f} / {ours.keep_alive.cpu_per_request_s * 1e6:.0f} µs, the bare app "
        f"{theirs.close.cpu_per_request_s * 1e6:.0f} / {theirs.keep_alive.cpu_per_request_s * 1e6:.0f} µs. "
        "1 client: connect to the answer's last byte, Python client. "
        f"Each row is the median of {len(results)} rounds of salara then the bare app; the rounds' ratios, "
        f"close: {closes}; keep-alive: {keeps}; salara's 1-client p50: {singles}. "
        f"Answer: {result.answer}"
    )
    return table
