"""The stores the unit tests run on: the SQLite file and a throwaway PostgreSQL cluster.

``open_store`` is parametrized by driver: a test that takes it runs once on
each (ids ``sqlite`` and ``postgres``). The PostgreSQL cluster
(:mod:`tests.pgcluster`) starts once per session, at the first test that
needs it, and stops at the end; each test gets its database emptied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from salara.store import migrate
from salara.store.interface import Store
from salara.store.postgres import PostgresStore
from salara.store.sqlite import Outbox
from tests.pgcluster import Cluster, bin_dir

TABLES = "events, deliveries, attempts, endpoint_state, tracked_calls, live_channels, idempotency_keys"
OpenStore = Callable[..., Store]
"""``open_store(max_rows=..., recover=..., readonly=..., max_keys=...)``: the test's store, opened (again)."""


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster with a database ``salara_test`` migrated to this salara's schema."""
    binaries = bin_dir()
    if binaries is None:
        pytest.fail("Debian's postgresql package is not installed: run ./scripts/setup.sh (as root) first")
    cluster = Cluster(binaries)
    try:
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True) as db:
            db.execute("CREATE DATABASE salara_test")
        with psycopg.connect(cluster.url("salara_test"), autocommit=True) as db:
            migrate.migrate(db)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of the test database, emptied (the schema stays)."""
    url = pg_cluster.url("salara_test")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which driver the test runs on."""
    return str(request.param)


@pytest.fixture
def open_store(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens the test's store (one SQLite file, or one PostgreSQL database, per test); closed at the end."""
    opened: list[Store] = []
    url = str(request.getfixturevalue("pg_url")) if store_kind == "postgres" else ""

    def open_(**options: Any) -> Store:
        store: Store = PostgresStore(url, **options) if url else Outbox(tmp_path / "outbox.db", **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store_conf(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ``[outbox]`` section's first lines for the store ``open_store`` opens (the command line's config)."""
    if store_kind == "postgres":
        return f"[outbox]\nurl={request.getfixturevalue('pg_url')}\n"
    return f"[outbox]\npath={tmp_path / 'outbox.db'}\n"
