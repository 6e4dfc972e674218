"""AMI ingest benchmark: events/s parsing the stream of :mod:`bench.ami_stream`.

Run from the repository root::

    python -m bench.ingest --events 1000000 --rounds 3

Each parser gets the same chunks (same seed, regenerated lazily for each run)
and only the time spent inside the parser is counted, with a clock read around
every chunk, so generating the stream is not measured. Compare:

(a) :func:`baseline_parse` -- the plainest pure-Python parse of the same bytes;
(b) :func:`protocol_parse` -- salara's :class:`~salara.ami.protocol.AMIConnection`;
(c) :func:`full_path` -- the whole ingest path as the service runs it: parse,
    the call model's one fold (the registry behind ``/v1/calls`` and the
    tracking of SPEC §2), event filtering and outbox enqueue, every event
    mode on "all calls". (Before the call model was one, this path left out
    the second fold the service ran for ``/v1/calls``.)
(d) :func:`full_path` with ``lifecycle=True`` -- the same for an endpoint
    with ``payload = extended`` and ``lifecycle = yes``: extended bodies, and
    the call lifecycle events (``call.started`` ... ``call.ended``) decided
    and stored too. (c) keeps today's compat settings, so that later
    features do not move it.

(a) and (c) run in turn, three rounds by default (:func:`alternating`), and
the ratio given is the median of the rounds' ratios; (b) and (d) run once,
against the median of the rounds' (a).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.ami_stream import stream_chunks
from salara.ami.messages import Event
from salara.ami.protocol import AMIConnection
from salara.calls.lifecycle import CallLifecycle
from salara.calls.tracking import CallTracker
from salara.config import Event as EventModes
from salara.events.pipeline import BATCH_WINDOW_S, EventPipeline
from salara.store.sqlite import Outbox


def baseline_parse(chunks: Iterable[bytes]) -> tuple[int, float]:
    """Parse with plain bytes/str splitting; return (events seen, seconds parsing).

    Accumulate bytes, split messages on CR LF CR LF, decode each, split lines
    on CR LF and headers on the first ``": "`` into ``[name, value]`` lists.
    The greeting is skipped as the first line.
    """
    clock = time.perf_counter
    events = 0
    elapsed = 0.0
    buffer = b""
    greeted = False
    for chunk in chunks:
        start = clock()
        buffer += chunk
        if not greeted:
            newline = buffer.find(b"\r\n")
            if newline >= 0:
                buffer = buffer[newline + 2 :]
                greeted = True
        if greeted:
            parts = buffer.split(b"\r\n\r\n")
            buffer = parts.pop()
            messages = [[line.split(": ", 1) for line in part.decode().split("\r\n")] for part in parts]
            for headers in messages:
                if headers[0][0] == "Event":
                    events += 1
        elapsed += clock() - start
    return events, elapsed


def protocol_parse(chunks: Iterable[bytes]) -> tuple[int, float]:
    """Parse with ``AMIConnection.receive_data`` + ``drain``; return (events, seconds)."""
    clock = time.perf_counter
    events = 0
    elapsed = 0.0
    connection = AMIConnection()
    for chunk in chunks:
        start = clock()
        connection.receive_data(chunk)
        for message in connection.drain():
            if isinstance(message, Event):
                events += 1
        elapsed += clock() - start
    return events, elapsed


ALL_CALLS = EventModes(newchannel=2, hangup=2, newexten=3, agentcon=3)
"""Every event mode on "all calls": the most work the ingest path can be given."""


def full_path(
    chunks: Iterable[bytes],
    outbox_dir: Path | None = None,
    *,
    lifecycle: bool = False,
    batch_window_s: float = BATCH_WINDOW_S,
) -> tuple[int, int, float]:
    """The whole ingest path: parse, the call model's fold, event filtering, outbox enqueue.

    Every event mode is set to "all calls"; the CRM events produced go into a
    real SQLite outbox (WAL, on disk), one transaction per read or per
    ``batch_window_s`` as in the service (the pipeline's own schedule: the
    loop turns after every read, and that turn is timed, with the
    transaction it runs). With ``lifecycle``, the endpoint is configured
    ``payload = extended`` and ``lifecycle = yes``: the SPEC §2 events get
    extended bodies and the call lifecycle events are decided and stored
    for it too. Returns (AMI events seen, events stored, seconds).
    """
    return asyncio.run(_full_path(chunks, outbox_dir, lifecycle, batch_window_s))


async def _full_path(
    chunks: Iterable[bytes], outbox_dir: Path | None, lifecycle: bool, batch_window_s: float
) -> tuple[int, int, float]:
    clock = time.perf_counter
    events = 0
    elapsed = 0.0
    with tempfile.TemporaryDirectory(dir=outbox_dir) as tmp:
        outbox = Outbox(Path(tmp) / "outbox.db", max_rows=10_000_000)
        tracker = CallTracker(ALL_CALLS)
        pipeline = EventPipeline(
            tracker,
            outbox,
            extended=lifecycle,
            lifecycle=CallLifecycle(tracker.registry) if lifecycle else None,
            lifecycle_webhook=lifecycle,
            batch_window_s=batch_window_s,
        )
        connection = AMIConnection()
        for chunk in chunks:  # the stream is made between the timed spans
            start = clock()
            connection.receive_data(chunk)
            for message in connection.drain():
                if isinstance(message, Event):
                    events += 1
                    pipeline.on_event(message)
            await asyncio.sleep(0)  # the loop turns after each read, as in the service: the transaction, if due
            elapsed += clock() - start
        start = clock()
        pipeline.flush()  # the last window's events
        elapsed += clock() - start
        stored = outbox.depth()
        outbox.close()
    return events, stored, elapsed


@dataclass(frozen=True)
class Round:
    """One round of :func:`alternating`: (a) then (c) on the same stream, rates in events/s."""

    baseline_rate: float
    full_rate: float
    stored: int
    """CRM events (c) stored."""
    same_events: bool
    """Whether (c) saw as many AMI events as (a)."""

    @property
    def ratio(self) -> float:
        return self.full_rate / self.baseline_rate if self.baseline_rate else float("nan")


def alternating(events: int, rounds: int, seed: int = 1) -> list[Round]:
    """(a) then (c), ``rounds`` times in turn, each on the stream of ``events`` events made afresh.

    One (a) alone moves by a fifth from run to run on a shared machine;
    taken in turn with (c), both are under much the same load from the
    rest of it. Compare the rounds' ratios (:func:`median_round`), not one
    path's best against the other's worst.
    """
    results = []
    for _ in range(rounds):
        base_events, base_s = baseline_parse(stream_chunks(events, seed))
        full_events, stored, full_s = full_path(stream_chunks(events, seed))
        results.append(Round(base_events / base_s, full_events / full_s, stored, full_events == base_events))
    return results


def median_round(rounds: list[Round]) -> Round:
    """The round of the median ratio (the lower middle one of an even count)."""
    return sorted(rounds, key=lambda r: r.ratio)[(len(rounds) - 1) // 2]


def median_baseline(rounds: list[Round]) -> float:
    """The median of the rounds' (a) rates, in events/s: what (b) and (d), run once, are compared with."""
    return statistics.median_low(r.baseline_rate for r in rounds)


class _Counted:
    """Pass chunks through, counting reads and bytes."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.reads = 0
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.reads += 1
            self.size += len(chunk)
            yield chunk


def _line(label: str, events: int, seconds: float) -> str:
    rate = events / seconds if seconds else float("inf")
    return f"{label:<12} {events:>10,} events in {seconds:7.3f} s = {rate:>12,.0f} events/s"


def main(argv: list[str] | None = None) -> None:
    """Run (a) and (c) in turn ``--rounds`` times, then (b) and (d); print events/s and the ratios to (a)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the stream")
    parser.add_argument("--seed", type=int, default=1, help="stream and read-size seed")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a) then (c) (default 3)")
    args = parser.parse_args(argv)

    counted = _Counted(stream_chunks(args.events, args.seed))
    for _ in counted:
        pass
    print(
        f"stream: {args.events:,} events, {counted.size / 1e6:,.1f} MB in {counted.reads:,} reads "
        f"(mean {counted.size // max(counted.reads, 1):,} B), generated lazily, not timed"
    )
    rounds = alternating(args.events, max(1, args.rounds), args.seed)
    for number, one in enumerate(rounds, 1):
        print(
            f"round {number}: (a) baseline {one.baseline_rate:>10,.0f} events/s, (c) full path "
            f"{one.full_rate:>10,.0f} events/s ({one.stored:,} events stored): ratio (c)/(a) {one.ratio:.2f}"
            + ("" if one.same_events else "  WARNING: event counts differ")
        )
    print(f"median ratio (c)/(a) of {len(rounds)} rounds: {median_round(rounds).ratio:.2f}")
    base_rate = median_baseline(rounds)

    def report(label: str, events: int, seconds: float, stored: str = "") -> None:
        print(_line(label, events, seconds) + stored)
        ratio = (events / seconds) / base_rate if seconds and base_rate else float("nan")
        print(f"ratio {label.split()[0]}/(a) in events/s, (a) the rounds' median: {ratio:.2f}")
        if events != args.events:
            print(f"WARNING: event counts differ: stream {args.events}, {label} {events}")

    report("(b) protocol", *protocol_parse(stream_chunks(args.events, args.seed)))
    events, stored, seconds = full_path(stream_chunks(args.events, args.seed), lifecycle=True)
    report("(d) lifecycle", events, seconds, f"  ({stored:,} events stored)")


if __name__ == "__main__":
    main()
