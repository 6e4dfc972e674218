"""bench/stores.py on tiny sizes: both stores deliver every event (the figures are the benchmark's, not asserted)."""

from __future__ import annotations

from bench.stores import run


async def test_both_stores_deliver_every_event() -> None:
    sqlite, postgres = await run(300)
    assert (sqlite.label, postgres.label) == ("(a) SQLite store", "(b) PostgreSQL store")
    assert sqlite.events == postgres.events == 300
    assert sqlite.per_s > 0 and postgres.per_s > 0 and postgres.adds_per_s > 0
