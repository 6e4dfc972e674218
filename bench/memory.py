"""Memory benchmark: RSS while ingesting AMI events (the stream of :mod:`bench.ami_stream`).

Run from the repository root::

    python -m bench.memory --events 1000000

RSS is read from ``/proc/self/status``: ``VmRSS`` at the start (once the
first read went through, so the stream generator's templates are loaded),
half-way (when half the events came out of the parser) and at the end, and
every 64 reads in between; the peak is the largest of the process's
high-water mark ``VmHWM`` and every sample. The second half's growth compares
the highest RSS sampled in the second half with the highest of the first
half: a single sample at half-way or at the end depends on which generator
buffer happens to be alive (a few MB either way), the highest ones do not. Run it in a fresh process (``python -m
bench.memory``, as ``python -m bench`` does) so that nothing else the process
did is counted.

Paths measured, each in a process of its own (``--path``): salara's sans-I/O
protocol layer (:func:`protocol_rss`) and the full ingest path
(:func:`full_path_rss`: parse, call tracking, event filtering and outbox
enqueue into a SQLite file in a temporary directory, every event mode on "all
calls", as :func:`bench.ingest.full_path` runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.ami_stream import stream_chunks
from salara.ami.messages import Event
from salara.ami.protocol import AMIConnection


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@dataclass(frozen=True)
class MemoryResult:
    """RSS samples of one run, in KiB."""

    events: int
    start_kib: int
    half_kib: int
    end_kib: int
    peak_kib: int
    first_half_max_kib: int
    second_half_max_kib: int

    @property
    def peak_mb(self) -> float:
        """The peak in MB (10^6 bytes)."""
        return self.peak_kib * 1024 / 1e6

    @property
    def second_half_growth(self) -> float:
        """RSS growth over the second half: its highest sample against the first half's highest."""
        return (self.second_half_max_kib - self.first_half_max_kib) / self.first_half_max_kib

    def line(self, label: str) -> str:
        """One human-readable line."""
        mb = 1024 / 1e6
        return (
            f"{label}: {self.events:,} events; RSS start {self.start_kib * mb:.1f} MB, "
            f"half {self.half_kib * mb:.1f} MB, end {self.end_kib * mb:.1f} MB, "
            f"peak {self.peak_mb:.1f} MB; highest sample first half {self.first_half_max_kib * mb:.1f} MB, "
            f"second half {self.second_half_max_kib * mb:.1f} MB: {self.second_half_growth:+.1%}"
        )


class _Sampler:
    """Counts events and samples RSS: after the first read, at half-way, at the end, and every 64 reads.

    The peak is the largest of ``VmHWM`` and every sample: the kernel updates
    its high-water mark lazily, so ``VmHWM`` alone can read below a sample.
    """

    def __init__(self, n_events: int) -> None:
        self.events = 0
        self._half = n_events // 2
        self._reads = 0
        self.start_kib = 0
        self.half_kib = 0
        self.peak_kib = 0
        self.first_half_max_kib = 0
        self.second_half_max_kib = 0

    def _rss(self) -> int:
        rss = status_kib("VmRSS")
        self.peak_kib = max(self.peak_kib, rss)
        if self.events < self._half:
            self.first_half_max_kib = max(self.first_half_max_kib, rss)
        else:
            self.second_half_max_kib = max(self.second_half_max_kib, rss)
        return rss

    def after_read(self) -> None:
        self._reads += 1
        if not self.start_kib:
            self.start_kib = self._rss()
        if not self.half_kib and self.events >= self._half:
            self.half_kib = self._rss()
        elif self._reads % 64 == 0:
            self._rss()

    def result(self) -> MemoryResult:
        end = self._rss()
        peak = max(self.peak_kib, status_kib("VmHWM"))
        first = self.first_half_max_kib or end
        return MemoryResult(
            self.events, self.start_kib, self.half_kib or end, end, peak, first, self.second_half_max_kib or first
        )


def protocol_rss(chunks: Iterable[bytes], n_events: int) -> MemoryResult:
    """Feed ``chunks`` (holding ``n_events`` events) to ``AMIConnection``, sampling RSS."""
    connection = AMIConnection()
    sampler = _Sampler(n_events)
    for chunk in chunks:
        connection.receive_data(chunk)
        for message in connection.drain():
            if isinstance(message, Event):
                sampler.events += 1
        sampler.after_read()
    return sampler.result()


def full_path_rss(chunks: Iterable[bytes], n_events: int) -> MemoryResult | None:
    """The full ingest path (parse, call tracking, event filtering, outbox), sampling RSS.

    Returns None (and says so) when that path is not built.
    """
    try:
        from bench.ingest import ALL_CALLS
        from salara.calls.tracking import CallTracker
        from salara.events.pipeline import EventPipeline
        from salara.store.sqlite import Outbox
    except ImportError as exc:
        print(f"memory, full ingest path: not built yet ({exc})")
        return None

    async def ingest() -> MemoryResult:  # the pipeline schedules its flushes on the running loop
        sampler = _Sampler(n_events)
        with tempfile.TemporaryDirectory(prefix="salara-bench-") as tmp:
            outbox = Outbox(Path(tmp) / "outbox.db", max_rows=10_000_000)
            pipeline = EventPipeline(CallTracker(ALL_CALLS), outbox, extended=False)
            connection = AMIConnection()
            for chunk in chunks:
                connection.receive_data(chunk)
                for message in connection.drain():
                    if isinstance(message, Event):
                        sampler.events += 1
                        pipeline.on_event(message)
                pipeline.flush()  # as the service does after each read
                await asyncio.sleep(0)  # the loop turns between reads, as in the service
                sampler.after_read()
            result = sampler.result()
            outbox.close()
        return result

    return asyncio.run(ingest())


PATHS: dict[str, Callable[[Iterable[bytes], int], MemoryResult | None]] = {
    "protocol": protocol_rss,
    "full": full_path_rss,
}


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bench.memory [--events N] [--seed S] [--path protocol|full] [--json]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the stream")
    parser.add_argument("--seed", type=int, default=1, help="stream and read-size seed")
    parser.add_argument("--path", choices=sorted(PATHS), default="protocol", help="what ingests (default protocol)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line (for python -m bench)")
    args = parser.parse_args(argv)
    result = PATHS[args.path](stream_chunks(args.events, args.seed), args.events)
    if args.json:  # the last line of output
        print(json.dumps(asdict(result) if result else None))
    elif result:
        print(result.line(f"memory, {args.path}"))


if __name__ == "__main__":
    main()
