"""Webhook delivery from the PostgreSQL store against the SQLite store, in the same run.

Run from the repository root (Debian's ``postgresql`` package installed, as
``scripts/setup.sh`` does)::

    python -m bench.stores --events 20000

The same events (:func:`bench.webhooks.make_events`: compat bodies, 5 per
call, 100 calls interleaved) go from each store to the same fast local CRM
(:class:`bench.webhooks.CRMProcess`, a subprocess of its own) through the
same :class:`~salara.crm.delivery.DeliveryWorker` settings:

(a) baseline: :class:`~salara.store.sqlite.Outbox` on a file in a temporary
    directory;
(b) :class:`~salara.store.postgres.PostgresStore` on a throwaway PostgreSQL
    cluster started for the run (:mod:`tests.pgcluster`: 127.0.0.1, a free
    port, ``fsync`` off, deleted at the end), migrated by ``salara db
    migrate``'s code; one node.

Every event is in the store before the worker starts (adding is timed on
its own); the figure is deliveries/s until the CRM has answered them all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.webhooks import CRMProcess, Event, _client, _post, _until_delivered, fill, make_events
from salara.crm.delivery import DeliveryWorker
from salara.store.interface import Store
from salara.store.postgres import PostgresStore
from salara.store.sqlite import Outbox
from tests.pgcluster import migrated_database


@dataclass(frozen=True, slots=True)
class StoreFigures:
    """One store's run: events, adds per second, deliveries per second."""

    label: str
    events: int
    adds_per_s: float
    per_s: float


def postgres_url() -> contextlib.AbstractContextManager[str]:
    """A migrated database on a throwaway cluster. Raises RuntimeError without Debian's postgresql package."""
    return migrated_database("salara_bench")


async def deliver(store: Store, url: str, events: Sequence[Event], concurrency: int) -> float:
    """Seconds for one worker to deliver every event in ``store`` to the CRM at ``url``."""
    async with _client(url, concurrency) as client:
        await _post(client, url, events[0])  # a duplicate: connect before the clock starts
    worker = DeliveryWorker(store, url, concurrency=concurrency, adaptive=False, timeout_s=30)
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    try:
        await _until_delivered(worker, len(events))
        return time.perf_counter() - started
    finally:
        task.cancel()
        await asyncio.wait([task])


async def measure(
    label: str, store: Store, crm_url: str, events: Sequence[Event], concurrency: int, batch: int
) -> StoreFigures:
    """Fill ``store``, then deliver from it: its figures."""
    fill_s = fill(store, events, batch)
    deliver_s = await deliver(store, crm_url, events, concurrency)
    return StoreFigures(label, len(events), len(events) / fill_s, len(events) / deliver_s)


async def run(events: int, *, concurrency: int = 8, batch: int = 50) -> tuple[StoreFigures, StoreFigures]:
    """(SQLite, PostgreSQL) figures for ``events`` events, on one CRM."""
    stream = make_events(events)
    crm = CRMProcess()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="salara-bench-") as tmp,
            Outbox(Path(tmp) / "stores.db", max_rows=len(stream) + 1) as outbox,
        ):
            sqlite = await measure("(a) SQLite store", outbox, crm.url, stream, concurrency, batch)
        with postgres_url() as url, PostgresStore(url, max_rows=len(stream) + 1, node="bench") as store:
            postgres = await measure("(b) PostgreSQL store", store, crm.url, stream, concurrency, batch)
    finally:
        crm.close()
    return sqlite, postgres


def main(argv: list[str] | None = None) -> None:
    """Print adds/s and deliveries/s of both stores, and the ratio (b)/(a)."""
    parser = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events to deliver")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--batch", type=int, default=50, help="events per add")
    args = parser.parse_args(argv)
    import uvloop  # the loop salara serve runs on

    sqlite, postgres = uvloop.run(run(args.events, concurrency=args.concurrency, batch=args.batch))
    print(f"webhook delivery by store: {args.events:,} events, concurrency {args.concurrency}, uvloop")
    print(f"{'':<24} {'adds/s':>10} {'deliveries/s':>13}")
    for figures in (sqlite, postgres):
        print(f"{figures.label:<24} {figures.adds_per_s:>10,.0f} {figures.per_s:>13,.0f}")
    print(
        f"{'ratio (b)/(a)':<24} {postgres.adds_per_s / sqlite.adds_per_s:>10.2f} {postgres.per_s / sqlite.per_s:>13.2f}"
    )


if __name__ == "__main__":
    main()
