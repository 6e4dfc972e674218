"""What only the PostgreSQL store does: claims shared by nodes (leases, SKIP LOCKED), migrations, reconnecting.

Two :class:`PostgresStore` instances with different ``node`` names on one
database are two salara nodes. The database is the throwaway cluster's
(``pg_url``, :mod:`tests.unit.conftest`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from salara.crm.delivery import DeliveryWorker
from salara.store import migrate
from salara.store.interface import StoreError, StoreFailure
from salara.store.pglisten import listen
from salara.store.postgres import PostgresStore
from salara.store.records import Claimed, Counts, Result
from tests.pgcluster import Cluster, free_port
from tests.unit.crm_server import RecordingCRM, running, until

NOW = 1_700_000_000.0
LEASE_S = 30.0
_databases = itertools.count(1)


def node(url: str, name: str, **options: object) -> PostgresStore:
    return PostgresStore(url, max_rows=1000, node=name, lease_s=LEASE_S, **options)  # type: ignore[arg-type]


@pytest.fixture
def nodes(pg_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    a, b = node(pg_url, "a"), node(pg_url, "b")
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def empty_url(pg_cluster: Cluster) -> str:
    """A new database of the cluster, with no table at all."""
    name = f"empty_{next(_databases)}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return pg_cluster.url(name)


def ids(claimed: list[Claimed]) -> list[str]:
    return [event.id for event in claimed]


def test_a_node_that_dies_mid_delivery_has_its_claims_taken_over_after_the_lease(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    added = a.add([("A", b"a1"), ("A", b"a2"), ("B", b"b1")], now=NOW)
    taken = a.claim(10, now=NOW)
    assert ids(taken) == [added[0], added[2]]
    a.close()  # dies: no outcome, no release

    assert b.claim(10, now=NOW + LEASE_S - 1) == [], "a's lease still holds"
    assert b.next_due() == NOW + LEASE_S, "b's worker wakes when a's lease lapses"
    again = b.claim(10, now=NOW + LEASE_S)
    assert ids(again) == [added[0], added[2]], "the same ids: the CRM drops duplicates"
    assert [event.attempts for event in again] == [0, 0]
    assert b.counts() == Counts(pending=1, sending=2)

    b.record([Result(again[0], "delivered", NOW + LEASE_S, 200)])
    assert ids(b.claim(10, now=NOW + LEASE_S)) == [added[1]], "per-call order kept after the takeover"


def test_an_outcome_from_a_node_whose_lease_was_taken_over_only_goes_to_the_attempt_log(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    (event_id,) = a.add([("A", b"a1")], now=NOW)
    (late,) = a.claim(1, now=NOW)
    (mine,) = b.claim(1, now=NOW + LEASE_S)
    a.record([Result(late, "retry", NOW + LEASE_S + 1, 503, "HTTP 503", next_attempt_at=NOW + 999)])
    assert b.counts() == Counts(sending=1), "b still holds it"
    assert a.claim(1, now=NOW + LEASE_S + 2) == [], "and a cannot take it back while b's lease holds"
    b.record([Result(mine, "delivered", NOW + LEASE_S + 3, 200)])
    assert b.counts() == Counts(delivered=1)
    assert [(x.outcome, x.http_status) for x in b.attempts(event_id)] == [("retry", 503), ("delivered", 200)]


def test_a_node_renews_the_leases_of_what_it_has_in_flight_while_it_looks(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    a.add([("A", b"a1")], now=NOW)
    a.claim(1, now=NOW)
    assert a.claim(0, now=NOW + LEASE_S / 3) == []  # the worker's look while its slots are full: renews
    assert b.claim(1, now=NOW + LEASE_S) == [], "renewed until NOW + 4/3 of a lease"
    assert len(b.claim(1, now=NOW + LEASE_S * 4 / 3)) == 1


def test_claims_skip_rows_another_node_is_claiming_instead_of_waiting(
    pg_url: str, nodes: tuple[PostgresStore, PostgresStore]
) -> None:
    a, b = nodes
    first, second = a.add([("A", b"a1"), ("B", b"b1")], now=NOW)
    with psycopg.connect(pg_url) as other, other.transaction():
        other.execute("SELECT 1 FROM deliveries WHERE seq = 1 FOR UPDATE")  # a claim under way elsewhere
        assert ids(b.claim(10, now=NOW)) == [second]
    assert ids(a.claim(10, now=NOW)) == [first]


def test_a_restarted_node_resumes_its_own_claims_at_once_and_leaves_the_others(
    pg_url: str, nodes: tuple[PostgresStore, PostgresStore]
) -> None:
    a, b = nodes
    a.add([("A", b"a1"), ("B", b"b1")], now=NOW)
    a.claim(1, now=NOW)
    b.claim(1, now=NOW)
    a.close()
    with node(pg_url, "a") as restarted:
        assert restarted.counts() == Counts(pending=1, sending=1)
        assert [e.call_key for e in restarted.claim(10, now=NOW)] == ["A"]
    with node(pg_url, "c", recover=False) as cli:
        assert cli.counts() == Counts(sending=2), "the command line resumes nothing"


def test_a_database_not_migrated_is_refused_until_salara_db_migrate(empty_url: str) -> None:
    from salara.cli import main

    with pytest.raises(StoreFailure, match="run salara db migrate") as refused:
        node(empty_url, "a")
    assert isinstance(refused.value, StoreError)
    first = CliRunner().invoke(main, ["db", "migrate", "--url", empty_url])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[0] == "applied 0001_init"
    again = CliRunner().invoke(main, ["db", "migrate", "--url", empty_url])
    assert again.exit_code == 0 and "(up to date)" in again.output, again.output
    with node(empty_url, "a") as store:
        assert store.add([("A", b"1")]) and store.depth() == 1


def test_a_newer_schema_is_refused_by_the_store_and_by_migrate(pg_url: str) -> None:
    from salara.cli import main

    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("INSERT INTO salara_schema VALUES (%s, 'future', 0)", (migrate.latest() + 1,))
        try:
            with pytest.raises(StoreFailure, match="newer"):
                node(pg_url, "a")
            result = CliRunner().invoke(main, ["db", "migrate", "--url", pg_url])
            assert result.exit_code == 1 and "newer" in result.output, result.output
        finally:
            db.execute("DELETE FROM salara_schema WHERE version > %s", (migrate.latest(),))


def test_migrate_without_a_postgres_url_says_so() -> None:
    from salara.cli import main

    result = CliRunner().invoke(main, ["-c", "/dev/null", "db", "migrate"])
    assert result.exit_code == 1 and "no [outbox] url" in result.output, result.output


def test_a_broken_connection_is_opened_again_at_the_next_call(
    pg_url: str, nodes: tuple[PostgresStore, PostgresStore]
) -> None:
    a, _ = nodes
    a.add([("A", b"a1")], now=NOW)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(StoreFailure):
        a.depth()  # the call that finds it broken fails, changing nothing
    assert a.depth() == 1


def test_an_unreachable_database_fails_calls_at_once_instead_of_connecting_each_time(
    pg_url: str, pg_cluster: Cluster, nodes: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = nodes
    a.close()
    monkeypatch.setattr(a, "_url", pg_url.replace(f":{pg_cluster.port}/", f":{free_port()}/"))  # nothing listens
    with pytest.raises(StoreFailure):
        a.depth()
    connects: list[object] = []
    monkeypatch.setattr(psycopg, "connect", lambda *args, **kw: connects.append(args))
    with pytest.raises(StoreFailure, match="unreachable"):
        a.depth()
    assert connects == [], "no new attempt within the pause"


def test_the_name_never_shows_the_password() -> None:
    from salara.store.pginspection import safe_name

    assert safe_name("postgresql://salara:hunter2@db.example:5433/events?sslmode=require") == (
        "postgresql://salara@db.example:5433/events"
    )
    assert "hunter2" not in safe_name("postgresql://u:hunter2@[::1/x")


def test_the_config_chooses_the_driver(pg_url: str, tmp_path: Path) -> None:
    from salara.config.schema import Outbox as Section
    from salara.store.opening import open_store
    from salara.store.sqlite import Outbox

    with open_store(Section(url=pg_url, node="east", lease=5.0)) as store:
        assert isinstance(store, PostgresStore) and (store.node, store.lease_s) == ("east", 5.0)
    with open_store(Section(path=str(tmp_path / "outbox.db"))) as store:
        assert isinstance(store, Outbox)
    with pytest.raises(ValueError):
        Section(url="mysql://db/events")


def test_show_config_masks_the_databases_password(tmp_path: Path) -> None:
    from salara.cli import main

    conf = tmp_path / "salara.conf"
    conf.write_text("[outbox]\nurl=postgresql://salara:hunter2@db.example/events\n")
    conf.chmod(0o600)
    result = CliRunner().invoke(main, ["-c", str(conf), "show", "config"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "url=postgresql://***@db.example/events" in result.output


async def test_the_surviving_nodes_worker_delivers_what_a_dead_node_held_once_its_lease_lapses(pg_url: str) -> None:
    crm = RecordingCRM()
    await crm.start()
    dead = PostgresStore(pg_url, max_rows=1000, node="a", lease_s=1.0)
    survivor = PostgresStore(pg_url, max_rows=1000, node="b", lease_s=1.0)
    try:
        added = dead.add([("A", b'{"event":"A1"}'), ("A", b'{"event":"A2"}'), ("B", b'{"event":"B1"}')])
        assert len(dead.claim(10)) == 2  # A1 and B1 in flight on node a
        dead.close()  # killed mid-delivery
        killed = time.monotonic()
        worker = DeliveryWorker(survivor, crm.url, retry_min_s=0.02, retry_max_s=0.1, timeout_s=5.0, idle_poll_s=0.1)
        async with running(worker):
            await until(lambda: len(crm.delivered()) == 3, "node b delivers all three")
            took = time.monotonic() - killed
            # The CRM has the last POST before the worker has stored its outcome.
            await until(lambda: survivor.counts() == Counts(delivered=3), "the outcomes stored")
        requests = crm.delivered()
        assert [r.name for r in requests].index("A1") < [r.name for r in requests].index("A2"), "per-call order"
        assert sorted(r.id for r in requests) == sorted(added), "the ids the events were stored with"
        assert 1.0 <= took < 10.0, "sent once node a's lease lapsed (1 s), not before, and soon after"
    finally:
        survivor.close()
        await crm.stop()


async def test_a_retry_or_an_enable_on_another_node_wakes_this_nodes_workers(
    nodes: tuple[PostgresStore, PostgresStore], pg_url: str
) -> None:
    a, b = nodes
    woken = asyncio.Event()
    task = asyncio.create_task(listen(pg_url, woken.set))
    try:
        await asyncio.wait_for(woken.wait(), 10)  # once on listening
        woken.clear()
        a.add([("A", b"a1")], now=NOW)
        (event,) = a.claim(1, now=NOW)
        a.record([Result(event, "dead", NOW, 410, "gone")])
        await asyncio.sleep(0.2)
        assert not woken.is_set(), "outcomes wake nobody"
        assert b.retry() == 1  # another node, or the command line
        await asyncio.wait_for(woken.wait(), 10)
        woken.clear()
        b.disable("crm2", "HTTP 410", now=NOW)
        assert b.enable("crm2")
        await asyncio.wait_for(woken.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
