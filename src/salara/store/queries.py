"""Statements of the SQLite outbox run on its connection: adds, outcomes, listings, tracking, keys.

Functions of an open :class:`sqlite3.Connection`, for
:class:`~salara.store.sqlite.Outbox`: the ones that write run inside its
write transaction, which the caller holds (``BEGIN IMMEDIATE``); none
commits. Call keys, scopes, endpoint names and idempotency keys are free
text, compared whole. The SQL is :mod:`salara.store.statements`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from salara.calls.tracking import CallRow, ChannelRow, TrackingChanges
from salara.store import statements as sql
from salara.store.records import Attempt, Counts, EventInfo, LoggedEvent, NewEvent, Result, Status, attempt_row

Head = tuple[str, str]
"""``(endpoint, call key)``: a call whose next delivery to an endpoint may now go."""

# -- adds and outcomes --------------------------------------------------------------


def add(db: sqlite3.Connection, events: Sequence[tuple[str, NewEvent]], at: float) -> None:
    """Insert ``(id, event)`` rows stored at ``at`` (Unix s), with a delivery per endpoint each."""
    seq = int(db.execute(sql.LAST_SEQ).fetchone()[0])
    rows: list[tuple[object, ...]] = []
    deliveries: list[tuple[object, ...]] = []
    for event_id, event in events:
        seq += 1
        rows.append((seq, event_id, event.call_key, event.type, event.body, event.compat, at))
        deliveries.extend((seq, endpoint, event.call_key, at, 0) for endpoint in event.endpoints)
        deliveries.extend((seq, endpoint, event.call_key, at, 1) for endpoint in event.compat_endpoints)
    db.executemany(sql.INSERT_EVENT, rows)
    # A call's first delivery to an endpoint in the batch looks for an open one stored before; the next
    # ones of the batch wait behind that first one, open until this transaction ends: blocked, unasked.
    first: dict[tuple[object, object], tuple[object, ...]] = {}
    behind: list[tuple[object, ...]] = []
    for row in deliveries:
        endpoint_call = (row[1], row[2])
        if endpoint_call in first:
            behind.append(row)
        else:
            first[endpoint_call] = row
    if first:
        db.executemany(sql.INSERT_DELIVERY, first.values())
    if behind:
        db.executemany(sql.INSERT_BLOCKED_DELIVERY, behind)


def record(db: sqlite3.Connection, results: Sequence[Result]) -> set[Head]:
    """Store the outcomes of attempts, with an attempt-log row each; return the calls whose delivery ended.

    Only deliveries still in flight change; the caller lets the next delivery
    of each returned call go.
    """
    delivered, dead, retry, log_rows = [], [], [], []
    finished: set[Head] = set()
    for result in results:
        event = result.event
        key = (event.seq, event.endpoint, result.at, result.http_status)
        if result.outcome == "delivered":
            delivered.append(key)
            finished.add((event.endpoint, event.call_key))
        elif result.outcome == "dead":
            dead.append((*key, result.error))
            finished.add((event.endpoint, event.call_key))
        else:
            retry.append((*key, result.error, result.next_attempt_at))
        log_rows.append(attempt_row(result))
    for statement, rows in ((sql.DELIVERED, delivered), (sql.DEAD, dead), (sql.RETRY, retry)):
        if rows:
            db.executemany(statement, rows)
    db.executemany(sql.LOG_ATTEMPT, log_rows)
    return finished


def promote(db: sqlite3.Connection, heads: Iterable[Head]) -> None:
    """Make the next delivery of each ``(endpoint, call key)`` ready where none is open."""
    db.executemany(sql.PROMOTE, list(heads))


def delete_events(db: sqlite3.Connection, seqs: Sequence[int]) -> set[Head]:
    """Delete events ``seqs`` and their deliveries; return the calls that had an open delivery among them."""
    heads: set[Head] = set()
    for seq in seqs:
        heads.update(db.execute(sql.OPEN_OF, (seq,)).fetchall())
    db.executemany(sql.DELETE_DELIVERIES, [(seq,) for seq in seqs])
    db.executemany(sql.DELETE_EVENT, [(seq,) for seq in seqs])
    return heads


# -- listings and re-queueing -------------------------------------------------------


def counts(db: sqlite3.Connection, endpoint: str | None = None) -> Counts:
    """Deliveries by state, of one endpoint or all (scans the table)."""
    values = dict.fromkeys(("pending", "retrying", "sending", "dead", "delivered"), 0)
    where, params = ("WHERE endpoint = ?", (endpoint,)) if endpoint is not None else ("", ())
    rows = db.execute(f"SELECT status, count(*), total(attempts > 0) FROM deliveries {where} GROUP BY status", params)
    for status, count, tried in rows:
        if status == "blocked":
            values["pending"] += count
        elif status == "ready":
            values["pending"] += count - int(tried)
            values["retrying"] += int(tried)
        elif status in values:
            values[status] += count
    return Counts(**values)


def list_events(
    db: sqlite3.Connection,
    statuses: Sequence[Status],
    limit: int,
    *,
    endpoint: str | None = None,
    call_key: str | None = None,
    type_: str | None = None,
    since: float | None = None,
    after: int = 0,
) -> list[EventInfo]:
    """Up to ``limit`` deliveries in ``statuses`` (not empty) with event seq over ``after``, oldest first."""
    where = [f"d.status IN ({', '.join('?' * len(statuses))})", "d.seq > ?"]
    params: list[object] = [*statuses, after]
    for clause, value in (("d.endpoint = ?", endpoint), ("d.call_key = ?", call_key), ("e.type = ?", type_)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if since is not None:
        where.append("e.created_at >= ?")
        params.append(since)
    rows = db.execute(
        "SELECT e.id, d.call_key, d.status, d.attempts, e.created_at, d.next_attempt_at, d.last_status,"
        " d.last_error, CASE WHEN d.compat THEN coalesce(e.compat, e.body) ELSE e.body END, d.seq, e.type,"
        " d.endpoint, d.done_at"
        f" FROM deliveries AS d JOIN events AS e ON e.seq = d.seq WHERE {' AND '.join(where)}"
        " ORDER BY d.seq, d.endpoint LIMIT ?",
        (*params, limit),
    )
    return [EventInfo(*row) for row in rows.fetchall()]


def event_log(db: sqlite3.Connection, after: int, limit: int) -> list[LoggedEvent]:
    """Up to ``limit`` stored events with seq over ``after``, oldest first."""
    rows = db.execute(
        "SELECT seq, id, type, call_key, created_at, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    )
    return [LoggedEvent(*row) for row in rows.fetchall()]


def attempts(db: sqlite3.Connection, event_id: str, endpoint: str | None = None) -> list[Attempt]:
    """The attempt log of one event (to one endpoint, or all), oldest first."""
    where, params = ("AND endpoint = ?", (event_id, endpoint)) if endpoint is not None else ("", (event_id,))
    rows = db.execute(
        "SELECT event_id, at, outcome, http_status, error, endpoint, latency_ms, answer FROM attempts"
        f" WHERE event_id = ? {where} ORDER BY seq",
        params,
    )
    return [Attempt(*row) for row in rows.fetchall()]


def requeue(
    db: sqlite3.Connection,
    at: float,
    *,
    endpoint: str | None,
    ids: Sequence[str] | None,
    since: float | None,
    statuses: Sequence[Status],
) -> int:
    """Send deliveries again from ``at``: done ones (in ``statuses``) start over, waiting ones are due at once.

    Chosen by ``endpoint`` (None: all), event ``ids`` (None: all) and stored
    since ``since`` (None: any time). Per-call order holds: a re-sent delivery
    waits behind an open one of its call. Returns how many changed.
    """
    where = ["d.status IN (" + ", ".join("?" * len(statuses)) + ")"]
    params: list[object] = list(statuses)
    if endpoint is not None:
        where.append("d.endpoint = ?")
        params.append(endpoint)
    if ids is not None:
        where.append(f"e.id IN ({', '.join('?' * len(ids))})")
        params.extend(ids)
    if since is not None:
        where.append("e.created_at >= ?")
        params.append(since)
    chosen = db.execute(
        "SELECT d.seq, d.endpoint, d.call_key FROM deliveries AS d JOIN events AS e ON e.seq = d.seq"
        f" WHERE {' AND '.join(where)} ORDER BY d.seq",
        params,
    ).fetchall()
    db.executemany(sql.REQUEUE, [(seq, name, at) for seq, name, _ in chosen])
    promote(db, {(name, key) for _, name, key in chosen})
    where[0] = "d.status = 'ready' AND d.next_attempt_at > ?"
    params[: len(statuses)] = [at]
    due = f"SELECT d.seq, d.endpoint FROM deliveries AS d JOIN events AS e ON e.seq = d.seq WHERE {' AND '.join(where)}"
    waiting = db.execute(
        f"UPDATE deliveries AS u SET next_attempt_at = ? WHERE (u.seq, u.endpoint) IN ({due})", (at, *params)
    ).rowcount
    return len(chosen) + waiting


# -- call tracking ---------------------------------------------------------------


def write_tracking(db: sqlite3.Connection, tracking: TrackingChanges) -> None:
    """Apply tracking changes: ended calls and removed channels first, then the rows put."""
    # Deletions first: a channel may be removed and come back in one batch.
    if tracking.ended:
        db.executemany(sql.END_CALL, [(key,) for key in tracking.ended])
        db.executemany(sql.END_CALL_STATE, [(key,) for key in tracking.ended])
    if tracking.removed:
        db.executemany(sql.REMOVE_CHANNEL, [(key,) for key in tracking.removed])
    if tracking.calls:
        db.executemany(sql.PUT_CALL, [row[:5] for row in tracking.calls])
        # Apart, so that an older salara reading this file still finds the table it knows.
        db.executemany(sql.PUT_CALL_STATE, [(row[0], row[5], row[6]) for row in tracking.calls])
    if tracking.channels:
        db.executemany(sql.PUT_CHANNEL, tracking.channels)


def load_tracking(db: sqlite3.Connection) -> TrackingChanges:
    """The tracked calls (oldest first) and live channels stored."""
    calls: list[CallRow] = db.execute(sql.LOAD_CALLS).fetchall()
    channels: list[ChannelRow] = db.execute(sql.LOAD_CHANNELS).fetchall()
    return TrackingChanges(calls=calls, channels=channels)


# -- idempotency keys ------------------------------------------------------------


def remember_key(db: sqlite3.Connection, row: tuple[str, str, str, float, bytes], max_keys: int) -> None:
    """Put ``(scope, key, fingerprint, created_at, result)``; then forget the oldest keys over ``max_keys``."""
    db.execute(sql.PUT_KEY, row)
    excess = int(db.execute(sql.COUNT_KEYS).fetchone()[0]) - max_keys
    if excess > 0:
        db.execute(sql.TRIM_KEYS, (excess,))


def recall_key(db: sqlite3.Connection, scope: str, key: str, expired_before: float) -> tuple[str, bytes] | None:
    """Forget the keys of ``scope`` made before ``expired_before``; then ``key``'s (fingerprint, result), if kept."""
    db.execute(sql.EXPIRE_KEYS, (scope, expired_before))
    row = db.execute(sql.GET_KEY, (scope, key)).fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]))
