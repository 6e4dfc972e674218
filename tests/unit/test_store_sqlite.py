"""The store on each driver (a SQLite file, a PostgreSQL database): order per call, outcomes, crash, bounds.

The tests that take ``open_store`` or ``outbox`` run on both drivers; those about the SQLite file itself take ``path``.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest

from salara.store.interface import Store, StoreError
from salara.store.records import Claimed, Counts, Result, new_event_id
from salara.store.sqlite import Outbox
from tests.unit.conftest import OpenStore

NOW = 1_700_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
def outbox(open_store: OpenStore) -> Store:
    return open_store(max_rows=1000)


def body(name: str) -> bytes:
    return b'{"event":"%s"}' % name.encode()


def add(outbox: Store, *names: str, now: float = NOW) -> dict[str, str]:
    """Add events named ``<call><n>`` (call key = the letters); return {name: id}."""
    ids = outbox.add([(name.rstrip("0123456789"), body(name)) for name in names], now=now)
    return dict(zip(names, ids, strict=True))


def names(claimed: list[Claimed]) -> list[str]:
    return [event.body.decode().split('"')[3] for event in claimed]


def done(event: Claimed, outcome: str = "delivered", status: int | None = 200, **more: object) -> Result:
    return Result(event, outcome, NOW, status, **more)  # type: ignore[arg-type]


def test_add_returns_unique_ids_in_order_and_commits(open_store: OpenStore) -> None:
    with open_store(max_rows=1000) as outbox:
        ids = outbox.add([("A", b"1"), ("B", b"2"), ("A", b"3")])
        assert len(set(ids)) == 3
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
        assert outbox.add([]) == []
    with open_store(max_rows=1000) as outbox:
        listed = outbox.list_events()
    assert [(e.id, e.call_key, e.body) for e in listed] == [
        (ids[0], "A", b"1"),
        (ids[1], "B", b"2"),
        (ids[2], "A", b"3"),
    ]


def test_ids_may_be_given(outbox: Store) -> None:
    mine = [new_event_id(NOW), new_event_id(NOW)]
    assert outbox.add([("A", b"1"), ("A", b"2")], ids=mine) == mine
    with pytest.raises(ValueError):
        outbox.add([("A", b"1")], ids=mine)


def test_a_failed_batch_stores_nothing(outbox: Store) -> None:
    first = outbox.add([("A", b"1")])
    with pytest.raises(StoreError):
        outbox.add([("B", b"2"), ("B", b"3")], ids=[new_event_id(NOW), first[0]])
    assert [e.id for e in outbox.list_events()] == first
    assert outbox.counts() == Counts(pending=1)


def test_file_is_wal_and_private(path: Path) -> None:
    with Outbox(path, max_rows=10), sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_only_the_oldest_open_event_of_a_call_is_claimed(outbox: Store) -> None:
    ids = add(outbox, "A1", "B1", "A2", "C1", "B2", "A3")
    first = outbox.claim(10, now=NOW)
    assert names(first) == ["A1", "B1", "C1"]
    assert [e.id for e in first] == [ids["A1"], ids["B1"], ids["C1"]]
    assert outbox.claim(10, now=NOW) == []  # in flight: nothing more of A, B, C
    outbox.record([done(first[0]), done(first[1])])
    assert names(outbox.claim(10, now=NOW)) == ["A2", "B2"]


def test_a_batch_waits_behind_the_open_events_of_its_calls_stored_before(outbox: Store) -> None:
    add(outbox, "A1")
    add(outbox, "B1", "A2", "A3", "B2")  # A2 behind A1 (an earlier batch), B2 behind B1 (the same one)
    first = outbox.claim(10, now=NOW)
    assert names(first) == ["A1", "B1"]
    outbox.record([done(event) for event in first])
    assert names(outbox.claim(10, now=NOW)) == ["A2", "B2"]


def test_claim_respects_limit_and_due_time(outbox: Store) -> None:
    add(outbox, "A1", "B1", "C1", now=NOW)
    assert outbox.claim(10, now=NOW - 1) == []
    assert names(outbox.claim(2, now=NOW)) == ["A1", "B1"]
    assert names(outbox.claim(0, now=NOW)) == []
    assert names(outbox.claim(2, now=NOW)) == ["C1"]


def test_a_retry_holds_back_its_call_only(outbox: Store) -> None:
    add(outbox, "A1", "A2", "B1", "B2")
    a1, b1 = outbox.claim(10, now=NOW)
    outbox.record(
        [
            done(a1, "retry", 500, error="HTTP 500", next_attempt_at=NOW + 100),
            done(b1),
        ]
    )
    assert outbox.next_due() == NOW  # B2
    assert names(outbox.claim(10, now=NOW + 50)) == ["B2"]
    assert outbox.next_due() == NOW + 100
    again = outbox.claim(10, now=NOW + 100)
    assert names(again) == ["A1"]
    assert again[0].id == a1.id and again[0].attempts == 1
    outbox.record([done(again[0])])
    assert names(outbox.claim(10, now=NOW + 100)) == ["A2"]


def test_dead_stops_the_event_and_frees_its_call(outbox: Store) -> None:
    ids = add(outbox, "A1", "A2")
    (a1,) = outbox.claim(10, now=NOW)
    outbox.record([done(a1, "dead", 410, error="HTTP 410: Gone")])
    assert names(outbox.claim(10, now=NOW)) == ["A2"]
    assert outbox.counts() == Counts(sending=1, dead=1)
    (gone,) = outbox.list_events(["dead"])
    assert (gone.id, gone.last_status, gone.last_error, gone.attempts) == (ids["A1"], 410, "HTTP 410: Gone", 1)


def test_attempt_log(outbox: Store) -> None:
    ids = add(outbox, "A1")
    (a1,) = outbox.claim(1, now=NOW)
    outbox.record([done(a1, "retry", None, error="ConnectError: refused", next_attempt_at=NOW)])
    (a1,) = outbox.claim(1, now=NOW)
    outbox.record([done(a1, "retry", 503, error="HTTP 503: busy", next_attempt_at=NOW)])
    (a1,) = outbox.claim(1, now=NOW)
    outbox.record([done(a1)])
    log = outbox.attempts(ids["A1"])
    assert [(a.outcome, a.http_status, a.error) for a in log] == [
        ("retry", None, "ConnectError: refused"),
        ("retry", 503, "HTTP 503: busy"),
        ("delivered", 200, None),
    ]


def test_counts_by_state(outbox: Store) -> None:
    add(outbox, "A1", "A2", "B1", "C1", "D1")
    a1, b1, c1, _d1 = outbox.claim(10, now=NOW)
    outbox.record(
        [
            done(a1),
            done(b1, "retry", 500, error="x", next_attempt_at=NOW + 9),
            done(c1, "dead", 410, error="gone"),
        ]
    )
    counts = outbox.counts()
    # A2 pending, B1 retrying, D1 in flight, C1 dead, A1 delivered.
    assert counts == Counts(pending=1, retrying=1, sending=1, dead=1, delivered=1)
    assert counts.depth == outbox.depth() == 3


def test_in_flight_events_come_back_after_a_crash(open_store: OpenStore) -> None:
    outbox = open_store(max_rows=1000)
    ids = add(outbox, "A1", "A2", "B1")
    claimed = outbox.claim(10, now=NOW)
    assert names(claimed) == ["A1", "B1"]
    outbox.close()  # died with both in flight, no outcome recorded

    with open_store(max_rows=1000) as reopened:
        assert reopened.counts() == Counts(pending=3)
        again = reopened.claim(10, now=NOW)
        assert [e.id for e in again] == [ids["A1"], ids["B1"]]  # same ids: the CRM can drop duplicates
        assert [e.attempts for e in again] == [0, 0]


def test_release_puts_claimed_events_back(outbox: Store) -> None:
    add(outbox, "A1", "A2")
    claimed = outbox.claim(10, now=NOW)
    outbox.release(claimed)
    assert names(outbox.claim(10, now=NOW)) == ["A1"]


def test_full_outbox_drops_delivered_first_then_oldest_and_says_so(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    with open_store(max_rows=5) as outbox:
        ids = add(outbox, "A1", "A2", "B1")
        a1, _b1 = outbox.claim(10, now=NOW)
        outbox.record([done(a1)])
        with caplog.at_level(logging.WARNING, logger="salara.store"):
            add(outbox, "C1", "C2")  # 5 rows: full, nothing dropped
            assert outbox.dropped == 0
            add(outbox, "D1")  # the delivered A1 makes room
            assert outbox.dropped == 0
            assert caplog.records == []
            more = add(outbox, "E1", "E2")  # A2 and B1 (in flight) are oldest: A2 and C1 go
        assert outbox.dropped == 2
        assert [r.getMessage() for r in caplog.records] == [
            f"outbox {outbox.name} is full (max_rows=5): dropped the 2 oldest undelivered events (2 in all)"
        ]
        left = [e.id for e in outbox.list_events()]
        assert ids["A2"] not in left and ids["B1"] in left and more["E2"] in left
        assert len(left) == 5
        # C2 is now the oldest event of its call, so it may go.
        assert names(outbox.claim(10, now=NOW)) == ["C2", "D1", "E1"]


def test_a_smaller_max_rows_trims_on_open(open_store: OpenStore) -> None:
    with open_store(max_rows=100) as outbox:
        add(outbox, "A1", "A2", "A3", "A4")
    with open_store(max_rows=2) as outbox:
        assert outbox.dropped == 2
        assert names(outbox.claim(10, now=NOW)) == ["A3"]


def test_prune_deletes_old_delivered_rows_and_attempts(outbox: Store) -> None:
    add(outbox, "A1", "B1", "C1")
    a1, b1, c1 = outbox.claim(10, now=NOW)
    outbox.record([done(a1), Result(b1, "delivered", NOW + 10, 200), done(c1, "dead", 410, error="g")])
    assert outbox.prune(delivered_before=NOW + 5, attempts_before=NOW - 1) == 1
    assert outbox.counts() == Counts(dead=1, delivered=1)
    assert outbox.prune(delivered_before=NOW + 20, attempts_before=NOW + 5) == 1
    assert outbox.counts() == Counts(dead=1)
    assert outbox.attempts(a1.id) == [] and len(outbox.attempts(b1.id)) == 1


def test_retry_requeues_dead_and_waiting_events(outbox: Store) -> None:
    ids = add(outbox, "A1", "A2", "B1", "C1")
    a1, b1, c1 = outbox.claim(10, now=NOW)
    outbox.record(
        [
            done(a1, "dead", 410, error="g"),
            done(b1, "dead", 410, error="g"),
            done(c1, "retry", 500, error="e", next_attempt_at=NOW + 1000),
        ]
    )
    assert outbox.retry([ids["B1"]], now=NOW) == 1
    assert outbox.retry([], now=NOW) == 0
    # A1 waits behind A2 (open); C1 waits no longer.
    assert outbox.retry(now=NOW) == 2
    assert outbox.counts() == Counts(pending=3, retrying=1)
    assert names(outbox.claim(10, now=NOW)) == ["A2", "B1", "C1"]


def test_another_connection_sees_and_changes_the_same_file(open_store: OpenStore, outbox: Store) -> None:
    ids = add(outbox, "A1")
    (a1,) = outbox.claim(1, now=NOW)
    outbox.record([done(a1, "dead", 410, error="g")])
    with open_store(max_rows=1000) as cli:  # the command line, while salara runs
        assert [e.id for e in cli.list_events(["dead"])] == [ids["A1"]]
        assert cli.retry(now=NOW) == 1
    assert names(outbox.claim(1, now=NOW)) == ["A1"]


def test_newer_schema_is_refused(path: Path) -> None:
    Outbox(path, max_rows=10).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(sqlite3.DatabaseError):
        Outbox(path, max_rows=10)


def test_the_command_line_opens_without_recovery_while_events_are_in_flight(
    open_store: OpenStore, outbox: Store
) -> None:
    add(outbox, "A1", "B1", "B2")
    in_flight = outbox.claim(10, now=NOW)
    assert names(in_flight) == ["A1", "B1"]
    with open_store(max_rows=1000, readonly=True) as listing:  # salara events list
        assert listing.counts() == Counts(pending=1, sending=2)
    with open_store(max_rows=1, recover=False) as retrying:  # salara events retry: writes, no recovery, no trim
        assert retrying.retry(now=NOW) == 0
        assert retrying.dropped == 0
    assert outbox.counts() == Counts(pending=1, sending=2), "in-flight events stay in flight"
    assert outbox.claim(10, now=NOW) == [], "nothing is sent a second time"


def test_a_readonly_outbox_file_is_not_created(path: Path) -> None:
    with pytest.raises(sqlite3.Error):
        Outbox(path, max_rows=10, readonly=True)  # no file: not created
    assert not path.exists()


def test_a_readonly_outbox_writes_nothing(open_store: OpenStore) -> None:
    with open_store(max_rows=10) as outbox:
        add(outbox, "A1")
    with open_store(max_rows=10, readonly=True) as listing:
        assert [e.call_key for e in listing.list_events()] == ["A"]
        with pytest.raises(StoreError):
            listing.add([("B", b"1")])
        assert [e.call_key for e in listing.list_events()] == ["A"]


def test_cli_events_list_and_retry_leave_in_flight_events_alone(tmp_path: Path, outbox: Store, store_conf: str) -> None:
    from click.testing import CliRunner

    from salara.cli import main

    add(outbox, "A1")
    (a1,) = outbox.claim(1, now=NOW)
    conf = tmp_path / "salara.conf"
    conf.write_text(f"{store_conf}max_rows=1000\n")
    conf.chmod(0o600)
    listed = CliRunner().invoke(main, ["-c", str(conf), "events", "list"])
    assert listed.exit_code == 0, listed.output
    assert "sending 1" in listed.output
    retried = CliRunner().invoke(main, ["-c", str(conf), "events", "retry"])
    assert retried.exit_code == 0, retried.output
    assert outbox.counts() == Counts(sending=1)
    assert outbox.claim(1, now=NOW) == []
    outbox.record([done(a1)])
    assert outbox.counts() == Counts(delivered=1)


def test_tracking_is_written_with_the_events_of_a_read(open_store: OpenStore) -> None:
    from salara.calls.tracking import TrackingChanges

    with open_store(max_rows=1000) as outbox:
        assert outbox.load_tracking() == TrackingChanges()
        outbox.add(
            [("L1", b"1")],
            tracking=TrackingChanges(
                calls=[("L1", "8001", "9002", "makecall", NOW, None, None)],
                channels=[
                    ("L1", "L1", "PJSIP/8001-1", 5, "8001", "s"),
                    ("L1.2", "L1", "Local/9002@sim-1;1", 0, "", ""),
                ],
            ),
        )
        # A batch with tracking changes only (the API tracked a call, a channel changed state).
        outbox.add(
            [],
            tracking=TrackingChanges(
                calls=[("L2", "1", "2", "route", NOW + 1, "lead-1", NOW + 2)],
                channels=[("L1", "L1", "PJSIP/8001-1", 6, "8001", "s")],
                removed=["L1.2"],
            ),
        )
    with open_store(max_rows=1000) as reopened:
        assert reopened.load_tracking() == TrackingChanges(
            calls=[
                ("L1", "8001", "9002", "makecall", NOW, None, None),
                ("L2", "1", "2", "route", NOW + 1, "lead-1", NOW + 2),
            ],
            channels=[("L1", "L1", "PJSIP/8001-1", 6, "8001", "s")],
        )
        reopened.add([], tracking=TrackingChanges(ended=["L1", "L2"], removed=["L1"]))
        assert reopened.load_tracking() == TrackingChanges()
        assert reopened.counts() == Counts(pending=1)


def test_tracking_and_events_fail_together(open_store: OpenStore) -> None:
    from salara.calls.tracking import TrackingChanges

    with open_store(max_rows=1000) as outbox:
        first = outbox.add([("A", b"1")])
        with pytest.raises(StoreError):
            outbox.add(
                [("B", b"2")],
                ids=[first[0]],
                tracking=TrackingChanges(calls=[("B", "1", "2", "route", NOW, None, None)]),
            )
        assert outbox.load_tracking() == TrackingChanges()
