"""Delivery to CRMs that are not fast: slow, small-backlog, failing then recovering.

Run from the repository root::

    python -m bench.slow_crm

Each CRM runs in a subprocess of its own (``python -m bench.slow_crm --serve KIND``)
on 127.0.0.1 and counts what it sees; salara's side is the real
:class:`~salara.store.sqlite.Outbox` (a file in a temporary directory) and
:class:`~salara.crm.delivery.DeliveryWorker`. Every event is in the outbox
before the worker starts (a backlog after a CRM outage, or a busy hour);
events are spread over many calls, each call's events in order, so at most
one request per call is in flight. Each CRM gets salara's defaults (adaptive
concurrency, ceiling 256) and then fixed concurrencies, best one reported:

- **slow**: answers every POST after 200 ms, any number at once (PHP behind
  nginx): 3,000 events over 300 calls.
- **backlog**: a prefork server (4 workers, each serving one keep-alive
  connection at a time, 20 ms a request) listening with a backlog of 5:
  connections past what it serves wait unanswered and time out. 1,000 events
  over 200 calls.
- **recovering**: 10 ms a request, but 503 to everything for 2.5 s from its
  500th request on. 2,000 events over 200 calls. Reported: the peak
  requests in flight it saw, and requests per event (a retry storm shows in
  both).

A run stops after ``CAP_S``; its rate is then what was delivered by then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.webhooks import header_value
from salara.crm.delivery import DeliveryWorker
from salara.store.sqlite import Outbox

CAP_S: Final = 12.0
FAIL_FROM: Final = 500
FAIL_FOR_S: Final = 2.5
_OK: Final = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"result":0}'
_UNAVAILABLE: Final = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True)
class Scenario:
    kind: str
    calls: int
    per_call: int
    fixed: tuple[int, ...]

    @property
    def events(self) -> int:
        return self.calls * self.per_call


SCENARIOS: Final = (
    Scenario("slow", 300, 10, (32, 128, 256)),
    Scenario("backlog", 200, 5, (4, 8, 32)),
    Scenario("recovering", 200, 10, (8, 64, 256)),
)


# -- the CRMs (in their own process) ------------------------------------------------------------------------------


class _Seen:
    """What a CRM saw: requests, ids answered 2xx, most requests at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.delivered: set[str] = set()
        self.now = 0
        self.peak = 0
        self.first_at: float | None = None

    def begin(self) -> float:
        """Count a request; seconds since the ``FAIL_FROM``-th request (negative before it)."""
        with self.lock:
            self.requests += 1
            self.now += 1
            self.peak = max(self.peak, self.now)
            if self.requests == FAIL_FROM:
                self.first_at = time.monotonic()
            return -1.0 if self.first_at is None else time.monotonic() - self.first_at

    def end(self, event_id: str, ok: bool) -> None:
        with self.lock:
            self.now -= 1
            if ok:
                self.delivered.add(event_id)

    def report(self) -> str:
        return json.dumps({"requests": self.requests, "delivered": len(self.delivered), "peak": self.peak})


def _read_request(conn: socket.socket, buffer: bytearray) -> tuple[str, bytearray] | None:
    """One request's ``webhook-id`` from a blocking socket; None at the peer's close."""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end]).lower()
    length = int(header_value(head, b"content-length") or b"0")
    while len(buffer) < end + 4 + length:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    return header_value(head, b"webhook-id").decode(), bytearray(buffer[end + 4 + length :])


def _prefork_worker(listener: socket.socket, seen: _Seen, service_s: float) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # the listener closed: the run is over
        conn.settimeout(5.0)  # Apache's KeepAliveTimeout
        buffer = bytearray()
        with conn:
            try:
                while (request := _read_request(conn, buffer)) is not None:
                    event_id, buffer = request
                    seen.begin()
                    time.sleep(service_s)
                    conn.sendall(_OK)
                    seen.end(event_id, True)
            except OSError:
                pass  # the client gave up on this connection


async def _serve_async(kind: str, seen: _Seen) -> asyncio.Server:
    service_s = 0.2 if kind == "slow" else 0.01

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                await reader.readexactly(int(header_value(head, b"content-length") or b"0"))
                event_id = header_value(head, b"webhook-id").decode()
                since = seen.begin()
                await asyncio.sleep(service_s)
                failing = kind == "recovering" and 0.0 <= since < FAIL_FOR_S
                writer.write(_UNAVAILABLE if failing else _OK)
                seen.end(event_id, not failing)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)


def serve(kind: str) -> None:
    """The CRM process: print its port, serve until stdin closes, print what it saw."""
    seen = _Seen()
    if kind == "backlog":
        listener = socket.create_server(("127.0.0.1", 0), backlog=5)
        for _ in range(4):
            threading.Thread(target=_prefork_worker, args=(listener, seen, 0.02), daemon=True).start()
        print(listener.getsockname()[1], flush=True)
        sys.stdin.read()
        listener.close()
    else:

        async def main() -> None:
            server = await _serve_async(kind, seen)
            print(server.sockets[0].getsockname()[1], flush=True)
            await asyncio.to_thread(sys.stdin.read)
            server.close()

        asyncio.run(main())
    print(seen.report(), flush=True)


# -- salara's side ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    label: str
    delivered: int
    seconds: float
    worker_peak: int
    crm_peak: int
    requests: int

    @property
    def per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


async def _deliver(scenario: Scenario, url: str, concurrency: int | None, workdir: Path) -> tuple[int, float, int]:
    with Outbox(workdir / f"{scenario.kind}-{concurrency}.db", max_rows=scenario.events + 1) as outbox:
        outbox.add(
            [
                (f"call-{call}", b'{"event":"Newstate","n":%d}' % n)
                for n in range(scenario.per_call)
                for call in range(scenario.calls)
            ]
        )
        if concurrency is None:
            worker = DeliveryWorker(outbox, url)  # the defaults
        else:
            worker = DeliveryWorker(outbox, url, concurrency=concurrency, adaptive=False)
        started = time.monotonic()
        task = asyncio.create_task(worker.run())
        try:
            while worker.stats.delivered < scenario.events and time.monotonic() - started < CAP_S:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            return worker.stats.delivered, time.monotonic() - started, worker.stats.peak_in_flight
        finally:
            task.cancel()
            await asyncio.wait([task])


def measure(scenario: Scenario, concurrency: int | None, workdir: Path) -> Run:
    """One delivery run against a fresh CRM process; ``concurrency`` None: salara's defaults."""
    crm = subprocess.Popen(
        [sys.executable, "-m", "bench.slow_crm", "--serve", scenario.kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert crm.stdin is not None and crm.stdout is not None
    try:
        port = int(crm.stdout.readline())
        delivered, seconds, worker_peak = asyncio.run(
            _deliver(scenario, f"http://127.0.0.1:{port}/events", concurrency, workdir)
        )
    finally:
        crm.stdin.close()
        seen = json.loads(crm.stdout.readline() or "{}")
        crm.wait(timeout=30)
    label = "defaults (adaptive)" if concurrency is None else f"fixed {concurrency}"
    return Run(label, delivered, seconds, worker_peak, seen.get("peak", 0), seen.get("requests", 0))


def run(only: str = "", quick: bool = False) -> dict[str, tuple[Run, Run, list[Run]]]:
    """kind -> (defaults, best fixed, every fixed run), for ``bench/__main__.py``.

    ``quick``: a tenth of the calls and one fixed concurrency (a smoke test).
    """
    results: dict[str, tuple[Run, Run, list[Run]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for full in SCENARIOS:
            if only and full.kind != only:
                continue
            scenario = Scenario(full.kind, full.calls // 10, full.per_call, full.fixed[:1]) if quick else full
            adaptive = measure(scenario, None, Path(tmp))
            fixed = [measure(scenario, concurrency, Path(tmp)) for concurrency in scenario.fixed]
            results[scenario.kind] = (adaptive, max(fixed, key=lambda r: r.per_s), fixed)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_crm", description=__doc__.split("\n")[0])
    parser.add_argument("--serve", choices=[s.kind for s in SCENARIOS], help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=[s.kind for s in SCENARIOS], default="")
    parser.add_argument("--quick", action="store_true", help="a tenth of the calls, one fixed concurrency")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    for kind, (adaptive, _, fixed) in run(args.only, args.quick).items():
        for result in (adaptive, *fixed):
            print(
                f"{kind:<11} {result.label:<20} {result.delivered:>6} events in {result.seconds:6.2f} s = "
                f"{result.per_s:8,.0f}/s; peak in flight: salara {result.worker_peak}, CRM {result.crm_peak}; "
                f"requests {result.requests}"
            )


if __name__ == "__main__":
    main()
