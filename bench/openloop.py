"""Open-loop latency of the compat endpoint on keep-alive connections, at fixed offered rates.

Run from the repository root (the test PBX running)::

    python -m bench.openloop --rates 500,2000,5000 --duration 5

Requests are due at evenly spaced times (``--poisson``: exponential gaps)
at each offered rate, whatever the answers do; each one's latency runs
from the time it was due, not from when it could be sent, so a stall
shows in every request it delays (no coordinated omission). A request
goes out on an idle keep-alive connection of a pool (64 by default);
when none is idle it waits for the first to free up, and the wait counts.
p50, p99 and p99.9 per rate; the highest rate whose p99 is under 5 ms.
salara (``salara serve``, a real AMI ``ExtensionState`` per request) and
the bare app (:mod:`bench.bare`) are measured in the same run.

The generator is this process: one thread, epoll, prebuilt request bytes,
answers framed by ``content-length``. Between two due times more than a
millisecond apart it waits in epoll; closer to a due time it polls and
sleeps 50 µs at a time (epoll's timeout has millisecond steps), so an
answer is timed at most about 0.1 ms late. Its CPU time and how late it
sent the requests it could send at once are reported with the figures.
"""

from __future__ import annotations

import argparse
import random
import select
import socket
import time
from collections import deque
from dataclasses import dataclass, field

from bench.api import SalaraServer, percentile
from bench.connections import BODY, CONTENT_LENGTH, BareServer
from bench.table import Row, ms, yes

REQUEST = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
RATES = (500, 2000, 5000)
"""Offered rates (requests/s) of ``make bench``."""
TARGET_P99_S = 0.005


@dataclass(frozen=True)
class OpenLoop:
    """One offered rate's figures; latencies in seconds from each request's due time."""

    rate: float
    """Offered requests/s."""
    sent: int
    answered: int
    errors: int
    seconds: float
    p50_s: float
    p99_s: float
    p999_s: float
    max_s: float
    send_late_p99_s: float
    """How late the generator sent the requests that found a connection idle, p99."""
    generator_cpu: float
    """The generator's CPU seconds per wall second (1.0 = one core)."""

    @property
    def achieved(self) -> float:
        """Answers per second."""
        return self.answered / self.seconds if self.seconds else float("nan")

    def line(self, label: str) -> str:
        """One human-readable line."""
        ms = 1e3
        return (
            f"{label:<10} {self.rate:>6,.0f}/s offered, {self.achieved:>6,.0f}/s answered ({self.errors} errors): "
            f"p50 {self.p50_s * ms:.3f} ms, p99 {self.p99_s * ms:.3f} ms, p99.9 {self.p999_s * ms:.3f} ms, "
            f"max {self.max_s * ms:.1f} ms; generator CPU {self.generator_cpu:.0%}, "
            f"sends late p99 {self.send_late_p99_s * 1e6:.0f} µs"
        )


class _Connection:
    __slots__ = ("buffer", "due", "need", "sock")

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buffer = b""
        self.due = 0.0
        self.need = 0


def _schedule(rate: float, count: int, start: float, poisson: bool) -> list[float]:
    if not poisson:
        return [start + i / rate for i in range(count)]
    draw = random.Random(15).expovariate
    times, at = [], start
    for _ in range(count):
        at += draw(rate)
        times.append(at)
    return times


def open_loop(port: int, rate: float, duration_s: float, connections: int = 64, *, poisson: bool = False) -> OpenLoop:
    """Offer ``rate`` requests/s for ``duration_s`` seconds to 127.0.0.1:``port``; wait for every answer (≤ 10 s)."""
    clock = time.perf_counter
    pool = [_Connection(port) for _ in range(connections)]
    by_fd = {c.sock.fileno(): c for c in pool}
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    idle = deque(pool)
    waiting: deque[float] = deque()
    count = max(1, int(rate * duration_s))
    cpu = time.process_time()
    due = _schedule(rate, count, clock() + 0.02, poisson)
    latencies: list[float] = []
    late: list[float] = []
    errors = 0
    sent = 0
    give_up = due[-1] + 10.0
    try:
        while len(latencies) + errors < count:
            now = clock()
            if now > give_up:
                break
            while sent < count and due[sent] <= now:
                if idle:
                    connection = idle.popleft()
                    connection.due = due[sent]
                    connection.sock.send(REQUEST)
                    late.append(now - due[sent])
                else:
                    waiting.append(due[sent])
                sent += 1
            wait = due[sent] - now if sent < count else 0.001
            events = poller.poll(wait - 0.001 if wait > 0.0012 else 0)
            if not events and 0 < wait <= 0.0012:
                time.sleep(min(wait, 50e-6))
                continue
            now = clock()
            for fd, _ in events:
                connection = by_fd[fd]
                data = connection.sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed a keep-alive connection")
                connection.buffer += data
                while True:
                    if not connection.need:
                        end = connection.buffer.find(b"\r\n\r\n")
                        if end < 0:
                            break
                        length = CONTENT_LENGTH.search(connection.buffer, 0, end)
                        connection.need = end + 4 + (int(length.group(1)) if length else 0)
                    if len(connection.buffer) < connection.need:
                        break
                    if connection.buffer.startswith(b"HTTP/1.1 200"):
                        latencies.append(now - connection.due)
                    else:
                        errors += 1
                    connection.buffer = connection.buffer[connection.need :]
                    connection.need = 0
                    if waiting:
                        connection.due = waiting.popleft()
                        connection.sock.send(REQUEST)
                    else:
                        idle.append(connection)
    finally:
        poller.close()
        for connection in pool:
            connection.sock.close()
    seconds = clock() - due[0]
    ordered, lateness = sorted(latencies), sorted(late)
    return OpenLoop(
        rate,
        sent,
        len(latencies),
        count - len(latencies),  # not answered, or not 200
        seconds,
        percentile(ordered, 0.5),
        percentile(ordered, 0.99),
        percentile(ordered, 0.999),
        ordered[-1] if ordered else float("nan"),
        percentile(lateness, 0.99),
        (time.process_time() - cpu) / seconds,
    )


@dataclass(frozen=True)
class OpenLoopResult:
    """Every offered rate, for salara and the bare app: each rate's median round by p99 (see :func:`run`)."""

    salara: list[OpenLoop]
    bare: list[OpenLoop]
    connections: int
    rounds: list[tuple[list[OpenLoop], list[OpenLoop]]] = field(default_factory=list)
    """Every round's figures, salara's and the bare app's."""

    def highest_under(self, figures: list[OpenLoop], p99_s: float = TARGET_P99_S) -> float:
        """The highest offered rate whose p99 is under ``p99_s`` with every request answered (0: none)."""
        return max((f.rate for f in figures if f.p99_s < p99_s and not f.errors), default=0.0)


def run(
    rates: tuple[float, ...] = RATES,
    duration_s: float = 5.0,
    connections: int = 64,
    *,
    poisson: bool = False,
    rounds: int = 1,
) -> OpenLoopResult:
    """salara and the bare app started for this run; each rate offered to one then the other, ``rounds`` times.

    Alternating them rate by rate puts both under much the same load from
    the rest of a shared machine; each rate's figures are then its median
    round by p99, for each server.
    """
    with SalaraServer() as salara, BareServer() as bare:
        ports = (salara.api_port, bare.port)
        for port in ports:
            open_loop(port, min(rates), min(1.0, duration_s), connections)  # warm-up
        measured: list[tuple[list[OpenLoop], list[OpenLoop]]] = []
        for _ in range(rounds):
            ours, theirs = [], []
            for rate in rates:
                ours.append(open_loop(ports[0], rate, duration_s, connections, poisson=poisson))
                theirs.append(open_loop(ports[1], rate, duration_s, connections, poisson=poisson))
            measured.append((ours, theirs))

    def median(figures: list[OpenLoop]) -> OpenLoop:
        return sorted(figures, key=lambda f: f.p99_s)[(len(figures) - 1) // 2]

    by_rate = range(len(rates))
    return OpenLoopResult(
        [median([round_[0][i] for round_ in measured]) for i in by_rate],
        [median([round_[1][i] for round_ in measured]) for i in by_rate],
        connections,
        measured,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bench.openloop [--rates 500,2000,5000] [--duration S] [--connections N]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="offered requests/s, comma list")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per rate (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections (default 64)")
    parser.add_argument("--poisson", action="store_true", help="exponential gaps instead of even spacing")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of salara then bare per rate (default 3)")
    args = parser.parse_args(argv)
    rates = tuple(float(r) for r in args.rates.split(","))
    result = run(rates, args.duration, args.connections, poisson=args.poisson, rounds=args.rounds)
    for number, (ours, theirs) in enumerate(result.rounds, 1):
        print(f"-- round {number} of {len(result.rounds)}")
        for name, figures in (("salara", ours), ("bare", theirs)):
            for figure in figures:
                print(figure.line(name))
    print(f"-- each rate's median round by p99, of {len(result.rounds)}")
    for name, figures in (("salara", result.salara), ("bare", result.bare)):
        for figure in figures:
            print(figure.line(name))
        print(f"{name}: highest offered rate with p99 < 5 ms: {result.highest_under(figures):,.0f}/s")


if __name__ == "__main__":
    main()


def rows(duration_s: float, notes: list[str], rounds: int = 3) -> list[Row]:
    """``make bench``'s rows: p50/p99/p99.9 per offered rate, salara beside the bare app; the best rate under 5 ms.

    Each rate's figures are its median round by p99 of ``rounds``; the notes list every round's p99.
    """
    result = run(RATES, duration_s, rounds=rounds)
    table = []
    for ours, theirs in zip(result.salara, result.bare, strict=True):
        table.append(
            Row(
                f"API open loop, {ours.rate:,.0f} req/s offered (keep-alive)",
                f"p50 {ms(ours.p50_s)}, p99 {ms(ours.p99_s)}, p99.9 {ms(ours.p999_s)}"
                + (f", {ours.errors} not answered" if ours.errors else ""),
                f"bare ASGI app p50 {ms(theirs.p50_s)}, p99 {ms(theirs.p99_s)}, p99.9 {ms(theirs.p999_s)}",
                f"p99 {ours.p99_s / theirs.p99_s:.2f}" if theirs.p99_s else "—",
                "p99 ≤ 5 ms" if ours.rate == 2000 else "—",
                yes(ours.p99_s <= TARGET_P99_S and not ours.errors) if ours.rate == 2000 else "—",
            )
        )
    highest, bare_highest = result.highest_under(result.salara), result.highest_under(result.bare)
    table.append(
        Row(
            "API open loop, highest offered rate with p99 < 5 ms",
            f"{highest:,.0f} req/s (of {', '.join(f'{r:,}' for r in RATES)})",
            f"bare ASGI app {bare_highest:,.0f} req/s",
            f"{highest / bare_highest:.2f}" if bare_highest else "—",
            "≥ 2,000 req/s",
            yes(highest >= 2000),
        )
    )
    every = [f for ours, theirs in result.rounds for f in ours + theirs]
    cpu = max(f.generator_cpu for f in every)
    late = max(f.send_late_p99_s for f in every)
    p99s = "; ".join(
        f"{rate:,.0f}/s salara {', '.join(ms(ours[i].p99_s) for ours, _ in result.rounds)}, "
        f"bare {', '.join(ms(theirs[i].p99_s) for _, theirs in result.rounds)}"
        for i, rate in enumerate(RATES)
    )
    notes.append(
        f"Open loop: `python -m bench.openloop --duration {duration_s:g} --rounds {len(result.rounds)}` "
        f"({result.connections} keep-alive "
        f"connections, evenly spaced due times, latency from the due time); the generator used at most "
        f"{cpu:.0%} of a core and sent the requests that found an idle connection at most {late * 1e6:.0f} µs "
        f"late (p99). Each rate's figures are its median of {len(result.rounds)} rounds of salara then the bare "
        f"app; every round's p99: {p99s}."
    )
    return table
