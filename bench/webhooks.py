"""Webhook delivery benchmark: events from the outbox to a fast local CRM.

Run from the repository root::

    python -m bench.webhooks --events 20000

The CRM is a raw asyncio HTTP/1.1 server (keep-alive, ``{"result":0}`` to
every POST; uvloop when installed) in a subprocess of its own, so it has its
own core and interpreter and is not the bottleneck; it notes when each
``webhook-id`` arrived (``time.monotonic_ns``, one clock for every process
of the machine on Linux) and hands the notes over at ``GET /dump``.

The same events (compat JSON bodies, 5 per call, 100 calls interleaved at a
time, as a busy PBX produces them) go two ways, with the same client
(:class:`salara.crm.http1.Http1Client`), request options, headers and
concurrency:

(a) baseline: ``concurrency`` coroutines posting the bodies straight from
    memory, no outbox;
(b) salara: :class:`~salara.store.sqlite.Outbox` on a file in a temporary
    directory and :class:`~salara.crm.delivery.DeliveryWorker`.

Two phases each:

- **throughput**: every event is there at the start (in the outbox: added
  before the worker starts; adding is timed on its own); deliveries/s until
  the CRM has answered them all;
- **latency**: events arrive at a steady rate (half the slower way's
  throughput unless ``--rate``), in a batch every 10 ms as AMI reads bring
  them; event-to-POST latency is from the moment the batch is added (or
  queued) to the moment the CRM reads the POST; p50 and p99. (In the
  throughput phase every event waits behind the whole backlog, which would
  measure the backlog, not salara.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp

from salara.crm.delivery import DeliveryWorker
from salara.crm.http1 import Http1Client
from salara.crm.signing import webhook_headers
from salara.store.interface import Store
from salara.store.records import new_event_id
from salara.store.sqlite import Outbox

REPO = Path(__file__).resolve().parent.parent
EVENTS_PER_CALL = 5
CALLS_AT_ONCE = 100
TICK_S = 0.01
"""The latency phase adds a batch this often."""

Event = tuple[str, str, bytes]
"""(event id, call key, body)."""


# -- the CRM (runs in its own process) -------------------------------------------

_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"result":0}'


class _CRMProtocol(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies, enough for aiohttp's POSTs and GET /dump."""

    def __init__(self, notes: list[tuple[str, int]]) -> None:
        self.notes = notes
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = int(header_value(head, b"content-length") or b"0")
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"get /dump"):
                payload = json.dumps(self.notes).encode()
                self.notes.clear()
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                continue
            self.notes.append((header_value(head, b"webhook-id").decode(), time.monotonic_ns()))
            self.transport.write(_OK)


def header_value(head: bytes, name: bytes) -> bytes:
    """The value of header ``name`` (lowercase) in a request ``head`` (lowercased), or b""."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


async def _serve_crm() -> None:
    loop = asyncio.get_running_loop()
    notes: list[tuple[str, int]] = []
    server = await loop.create_server(lambda: _CRMProtocol(notes), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until the parent closes our stdin (or dies).
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    server.close()


def crm_main() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_crm())
    else:
        uvloop.run(_serve_crm())


class CRMProcess:
    """The CRM subprocess: ``url`` to post to, :meth:`dump` to collect arrival times."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.webhooks", "--crm"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{port}/events"
        self._dump_url = f"http://127.0.0.1:{port}/dump"

    async def dump(self, client: aiohttp.ClientSession) -> dict[str, int]:
        """{event id: monotonic ns it arrived} since the last dump (the first arrival of each)."""
        async with client.get(self._dump_url, timeout=aiohttp.ClientTimeout(total=60)) as response:
            notes = await response.json()
        arrivals: dict[str, int] = {}
        for event_id, at_ns in notes:
            arrivals.setdefault(event_id, at_ns)
        return arrivals

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the events ----------------------------------------------------------------


def make_events(count: int) -> list[Event]:
    """``count`` compat events: 5 per call, ``CALLS_AT_ONCE`` calls interleaved."""
    names = ("Newchannel", "Newexten", "Newexten", "AgentConnect", "Hangup")
    states = ("DOWN", "UP", "UP", "UP", "UP")
    events: list[Event] = []
    block = 0
    while len(events) < count:
        for step in range(EVENTS_PER_CALL):
            for offset in range(CALLS_AT_ONCE):
                call = block * CALLS_AT_ONCE + offset
                body = {
                    "event": names[step],
                    "chan": f"PJSIP/8003-{call:08x}",
                    "caller": "8003",
                    "exten": f"{call % 10000:04d}",
                    "state": states[step],
                }
                events.append((new_event_id(time.time()), f"1700000000.{call}", json.dumps(body).encode()))
        block += 1
    return events[:count]


# -- the two ways ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """One way's results: throughput phase (deliveries/s) and latency phase (ms)."""

    label: str
    events: int
    per_s: float
    p50_ms: float
    p99_ms: float


@contextlib.asynccontextmanager
async def _client(url: str, concurrency: int) -> AsyncIterator[Http1Client]:
    """The client the worker uses, with its settings (``concurrency`` connections kept alive)."""
    client = Http1Client(url, max_connections=concurrency)
    try:
        yield client
    finally:
        await client.aclose()


async def _post(client: Http1Client, url: str, event: Event) -> None:
    """Post one event as the worker does (same headers and request options), no outbox."""
    event_id, _, body = event
    headers = webhook_headers(None, event_id, int(time.time()), body)
    headers.pop("content-type")  # the client sends it
    answer = await client.post(body, list(headers.items()), 30.0)
    if answer.status != 200:
        raise RuntimeError(f"the CRM answered {answer.status}")


async def baseline_burst(url: str, events: Sequence[Event], concurrency: int) -> float:
    """Seconds for ``concurrency`` posters to post every event straight from memory."""
    async with _client(url, concurrency) as client:
        await _post(client, url, events[0])  # connect before the clock starts (both ways do)
        queue = iter(events[1:])

        async def poster() -> None:
            for event in queue:
                await _post(client, url, event)

        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        return time.perf_counter() - started


async def baseline_paced(url: str, events: Sequence[Event], concurrency: int, rate: float) -> dict[str, int]:
    """Queue events at ``rate``; ``concurrency`` posters post them. {id: queued at, ns}."""
    queued_at: dict[str, int] = {}
    queue: asyncio.Queue[Event] = asyncio.Queue()
    async with _client(url, concurrency) as client:

        async def poster() -> None:
            while True:
                event = await queue.get()
                await _post(client, url, event)
                queue.task_done()

        def submit(batch: Sequence[Event]) -> None:
            now = time.monotonic_ns()
            for event in batch:
                queued_at[event[0]] = now
                queue.put_nowait(event)

        posters = [asyncio.create_task(poster()) for _ in range(concurrency)]
        try:
            await _paced(events, rate, submit)
            await queue.join()
        finally:
            for task in posters:
                task.cancel()
            await asyncio.wait(posters)
    return queued_at


def fill(outbox: Store, events: Sequence[Event], batch: int) -> float:
    """Add every event to ``outbox`` (either store) in batches of ``batch``; return the seconds it took."""
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        outbox.add([(key, body) for _, key, body in chunk], ids=[event_id for event_id, _, _ in chunk])
    return time.perf_counter() - started


async def _until_delivered(worker: DeliveryWorker, count: int) -> None:
    # The worker has no completion hook; reading a counter every 5 ms costs
    # nothing measurable.
    while worker.stats.delivered < count:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def outbox_burst(
    url: str, events: Sequence[Event], concurrency: int, batch: int, workdir: Path
) -> tuple[float, float]:
    """(seconds adding every event, seconds for the worker to deliver them all)."""
    with Outbox(workdir / "burst.db", max_rows=len(events) + 1) as outbox:
        fill_s = fill(outbox, events, batch)
        async with _client(url, concurrency) as client:
            await _post(client, url, events[0])  # a duplicate: connect before the clock starts
            worker = DeliveryWorker(outbox, url, concurrency=concurrency, adaptive=False, timeout_s=30)
            started = time.perf_counter()
            task = asyncio.create_task(worker.run())
            try:
                await _until_delivered(worker, len(events))
                return fill_s, time.perf_counter() - started
            finally:
                task.cancel()
                await asyncio.wait([task])


async def outbox_paced(
    url: str, events: Sequence[Event], concurrency: int, rate: float, workdir: Path
) -> dict[str, int]:
    """Add events at ``rate`` while the worker delivers them. {id: added at, ns}."""
    added_at: dict[str, int] = {}
    with Outbox(workdir / "paced.db", max_rows=len(events) + 1) as outbox:
        worker = DeliveryWorker(outbox, url, concurrency=concurrency, adaptive=False, timeout_s=30)

        def submit(batch: Sequence[Event]) -> None:
            now = time.monotonic_ns()
            outbox.add([(key, body) for _, key, body in batch], ids=[event_id for event_id, _, _ in batch])
            worker.notify()
            for event_id, _, _ in batch:
                added_at[event_id] = now

        task = asyncio.create_task(worker.run())
        try:
            await _paced(events, rate, submit)
            await _until_delivered(worker, len(events))
        finally:
            task.cancel()
            await asyncio.wait([task])
    return added_at


async def _paced(events: Sequence[Event], rate: float, submit: Callable[[Sequence[Event]], None]) -> None:
    per_tick = max(1, round(rate * TICK_S))
    started = time.monotonic()
    for tick, start in enumerate(range(0, len(events), per_tick)):
        delay = started + tick * TICK_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        submit(events[start : start + per_tick])


def _latencies_ms(sent_at: dict[str, int], arrivals: dict[str, int]) -> tuple[float, float]:
    missing = set(sent_at) - set(arrivals)
    if missing:
        raise RuntimeError(f"{len(missing)} events never reached the CRM")
    values = sorted((arrivals[event_id] - at) / 1e6 for event_id, at in sent_at.items())
    if len(values) < 2:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def run(
    events: int, *, concurrency: int = 8, rate: float | None = None, batch: int = 50
) -> tuple[Figures, Figures, float]:
    """Run both ways, both phases; return (baseline, salara, outbox adds per second)."""
    stream = make_events(events)
    crm = CRMProcess()
    try:
        async with aiohttp.ClientSession() as control:
            base_s = await baseline_burst(crm.url, stream, concurrency)
            base_rate = (len(stream) - 1) / base_s
            await crm.dump(control)
            with tempfile.TemporaryDirectory(prefix="salara-bench-") as tmp:
                fill_s, deliver_s = await outbox_burst(crm.url, stream, concurrency, batch, Path(tmp))
                await crm.dump(control)
                # Both at half the slower one's throughput: a rate one of them cannot keep up
                # with would measure its growing backlog, not its latency.
                paced_rate = rate or min(base_rate, len(stream) / deliver_s) / 2
                base_sent = await baseline_paced(crm.url, stream, concurrency, paced_rate)
                base_p50, base_p99 = _latencies_ms(base_sent, await crm.dump(control))
                added = await outbox_paced(crm.url, stream, concurrency, paced_rate, Path(tmp))
                p50, p99 = _latencies_ms(added, await crm.dump(control))
    finally:
        crm.close()
    baseline = Figures("(a) baseline: the same client, no outbox", len(stream), base_rate, base_p50, base_p99)
    salara = Figures("(b) salara: outbox + worker", len(stream), len(stream) / deliver_s, p50, p99)
    return baseline, salara, len(stream) / fill_s


def main(argv: list[str] | None = None) -> None:
    """Print deliveries/s and latency for (a) and (b), and the ratio (b)/(a)."""
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events to deliver")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (config default 8)")
    parser.add_argument("--rate", type=float, default=None, help="events/s of the latency phase")
    parser.add_argument("--batch", type=int, default=50, help="events per Outbox.add")
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="uvloop", help="event loop (salara serve runs on uvloop)"
    )
    parser.add_argument("--crm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.crm:
        crm_main()
        return
    work = run(args.events, concurrency=args.concurrency, rate=args.rate, batch=args.batch)
    if args.loop == "uvloop":
        import uvloop

        baseline, salara, adds_per_s = uvloop.run(work)
    else:
        baseline, salara, adds_per_s = asyncio.run(work)
    print(
        f"webhook delivery: {args.events:,} events ({EVENTS_PER_CALL} per call), concurrency {args.concurrency}, "
        f"{args.loop} loop; CRM: raw asyncio HTTP server in a subprocess"
    )
    latency_rate = args.rate or baseline.per_s / 2
    print(f"{'':<32} {'deliveries/s':>12}   latency at {latency_rate:,.0f} events/s: {'p50 ms':>7} {'p99 ms':>7}")
    for figures in (baseline, salara):
        print(f"{figures.label:<32} {figures.per_s:>12,.0f} {'':>30} {figures.p50_ms:>7.2f} {figures.p99_ms:>7.2f}")
    ratio = salara.per_s / baseline.per_s
    print(f"{'ratio (b)/(a)':<32} {ratio:>12.2f}   (targets: (b) >= 2,000 deliveries/s, ratio >= 0.5)")
    print(f"outbox adds: {adds_per_s:,.0f} events/s in batches of {args.batch}")


if __name__ == "__main__":
    main()
