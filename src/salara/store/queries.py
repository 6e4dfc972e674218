"""Statements of the SQLite outbox run on its connection: outcomes, listings, tracking, keys.

Functions of an open :class:`sqlite3.Connection`, for
:class:`~salara.store.sqlite.Outbox`: the ones that write run inside its
write transaction, which the caller holds (``BEGIN IMMEDIATE``); none
commits. Call keys, scopes and idempotency keys are free text, compared whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from salara.calls.tracking import CallRow, ChannelRow, TrackingChanges
from salara.store import schema
from salara.store.records import Attempt, Counts, EventInfo, Result, Status

# -- outcomes ------------------------------------------------------------------


def record(db: sqlite3.Connection, results: Sequence[Result]) -> set[str]:
    """Store the outcomes of attempts, with an attempt-log row each; return the call keys whose event ended.

    Only events still in flight change; the caller lets the next event of
    each returned call go.
    """
    delivered: list[tuple[int, float, int | None]] = []
    gone: list[tuple[int, float, int | None, str]] = []
    retry: list[tuple[int, float, int | None, str, float]] = []
    log_rows: list[tuple[str, float, str, int | None, str | None]] = []
    finished: set[str] = set()
    for result in results:
        event = result.event
        if result.outcome == "delivered":
            delivered.append((event.seq, result.at, result.http_status))
            finished.add(event.call_key)
        elif result.outcome == "gone":
            gone.append((event.seq, result.at, result.http_status, result.error))
            finished.add(event.call_key)
        else:
            retry.append((event.seq, result.at, result.http_status, result.error, result.next_attempt_at))
        log_rows.append((event.id, result.at, result.outcome, result.http_status, result.error or None))
    if delivered:
        db.executemany(schema.DELIVERED, delivered)
    if gone:
        db.executemany(schema.GONE, gone)
    if retry:
        db.executemany(schema.RETRY, retry)
    db.executemany(schema.LOG_ATTEMPT, log_rows)
    return finished


# -- listings and re-queueing -------------------------------------------------------


def counts(db: sqlite3.Connection) -> Counts:
    """Events by state (scans the table)."""
    values = dict.fromkeys(("pending", "retrying", "sending", "gone", "delivered"), 0)
    rows = db.execute("SELECT status, count(*), total(attempts > 0) FROM events GROUP BY status")
    for status, count, tried in rows:
        if status == "blocked":
            values["pending"] += count
        elif status == "ready":
            values["pending"] += count - int(tried)
            values["retrying"] += int(tried)
        elif status in values:
            values[status] += count
    return Counts(**values)


def list_events(db: sqlite3.Connection, statuses: Sequence[Status], limit: int) -> list[EventInfo]:
    """Up to ``limit`` events in ``statuses`` (not empty), oldest first."""
    marks = ", ".join("?" * len(statuses))
    rows = db.execute(
        "SELECT id, call_key, status, attempts, created_at, next_attempt_at, last_status, last_error,"
        f" body FROM events WHERE status IN ({marks}) ORDER BY seq LIMIT ?",
        (*statuses, limit),
    )
    return [EventInfo(*row) for row in rows.fetchall()]


def attempts(db: sqlite3.Connection, event_id: str) -> list[Attempt]:
    """The attempt log of one event, oldest first."""
    rows = db.execute(
        "SELECT event_id, at, outcome, http_status, error FROM attempts WHERE event_id = ? ORDER BY seq",
        (event_id,),
    )
    return [Attempt(*row) for row in rows.fetchall()]


def retry(db: sqlite3.Connection, ids: Sequence[str] | None, at: float) -> int:
    """Re-queue gone events and make waiting ones due at ``at`` (only ``ids``, not empty, unless None)."""
    where = ""
    params: tuple[str, ...] = ()
    if ids is not None:
        where, params = f" AND id IN ({', '.join('?' * len(ids))})", tuple(ids)
    gone = db.execute(f"SELECT seq FROM events WHERE status = 'gone'{where} ORDER BY seq", params)
    # One by one in event order: each sees whether its call has an open event.
    rows = [(seq, at) for (seq,) in gone.fetchall()]
    db.executemany(schema.REQUEUE_GONE, rows)
    waiting = db.execute(
        f"UPDATE events SET next_attempt_at = ? WHERE status = 'ready' AND next_attempt_at > ?{where}",
        (at, at, *params),
    ).rowcount
    return len(rows) + waiting


# -- call tracking ---------------------------------------------------------------


def write_tracking(db: sqlite3.Connection, tracking: TrackingChanges) -> None:
    """Apply tracking changes: ended calls and removed channels first, then the rows put."""
    # Deletions first: a channel may be removed and come back in one batch.
    if tracking.ended:
        db.executemany(schema.END_CALL, [(key,) for key in tracking.ended])
        db.executemany(schema.END_CALL_STATE, [(key,) for key in tracking.ended])
    if tracking.removed:
        db.executemany(schema.REMOVE_CHANNEL, [(key,) for key in tracking.removed])
    if tracking.calls:
        db.executemany(schema.PUT_CALL, [row[:5] for row in tracking.calls])
        # Apart, so that an older salara reading this file still finds the table it knows.
        db.executemany(schema.PUT_CALL_STATE, [(row[0], row[5], row[6]) for row in tracking.calls])
    if tracking.channels:
        db.executemany(schema.PUT_CHANNEL, tracking.channels)


def load_tracking(db: sqlite3.Connection) -> TrackingChanges:
    """The tracked calls (oldest first) and live channels stored."""
    calls: list[CallRow] = db.execute(schema.LOAD_CALLS).fetchall()
    channels: list[ChannelRow] = db.execute(schema.LOAD_CHANNELS).fetchall()
    return TrackingChanges(calls=calls, channels=channels)


# -- idempotency keys ------------------------------------------------------------


def remember_key(db: sqlite3.Connection, row: tuple[str, str, str, float, bytes], max_keys: int) -> None:
    """Put ``(scope, key, fingerprint, created_at, result)``; then forget the oldest keys over ``max_keys``."""
    db.execute(schema.PUT_KEY, row)
    excess = int(db.execute(schema.COUNT_KEYS).fetchone()[0]) - max_keys
    if excess > 0:
        db.execute(schema.TRIM_KEYS, (excess,))


def recall_key(db: sqlite3.Connection, scope: str, key: str, expired_before: float) -> tuple[str, bytes] | None:
    """Forget the keys of ``scope`` made before ``expired_before``; then ``key``'s (fingerprint, result), if kept."""
    db.execute(schema.EXPIRE_KEYS, (scope, expired_before))
    row = db.execute(schema.GET_KEY, (scope, key)).fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]))
