"""Statements of the PostgreSQL store run on its connection: adds, outcomes, listings, tracking, keys.

Functions of an open :class:`psycopg.Connection`, for
:class:`~salara.store.postgres.PostgresStore`: the ones that write run
inside its transaction, which the caller holds; none commits. They raise
:class:`psycopg.Error`, which the store turns into
:class:`~salara.store.interface.StoreFailure`. The SQL is
:mod:`salara.store.pgstatements`; what the rows mean,
:mod:`salara.store.interface`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from salara.calls.tracking import CallRow, ChannelRow, TrackingChanges
from salara.store import pgstatements as sql
from salara.store.records import Attempt, Claimed, Counts, EventInfo, LoggedEvent, NewEvent, Result, Status, attempt_row

Connection = psycopg.Connection[tuple[Any, ...]]
Head = tuple[str, str]
"""``(endpoint, call key)``: a call whose next delivery to an endpoint may now go."""

# -- adds and outcomes --------------------------------------------------------------


def add(db: Connection, events: Sequence[tuple[str, NewEvent]], at: float) -> None:
    """Insert ``(id, event)`` rows stored at ``at`` (Unix s), with a delivery per endpoint each, in order."""
    with db.cursor() as cur:
        cur.executemany(
            sql.INSERT_EVENT,
            [(event_id, e.call_key, e.type, e.body, e.compat, at) for event_id, e in events],
            returning=True,
        )
        seqs = []
        while True:
            row = cur.fetchone()
            if row is not None:
                seqs.append(int(row[0]))
            if not cur.nextset():
                break
        deliveries: list[dict[str, object]] = []
        for seq, (_, event) in zip(seqs, events, strict=True):
            for endpoints, compat in ((event.endpoints, False), (event.compat_endpoints, True)):
                deliveries.extend(
                    {"seq": seq, "endpoint": name, "call_key": event.call_key, "at": at, "compat": compat}
                    for name in endpoints
                )
        if deliveries:
            cur.executemany(sql.INSERT_DELIVERY, deliveries)


def claim(db: Connection, endpoint: str, at: float, limit: int, *, node: str, until: float) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries to ``endpoint`` for ``node`` until ``until``; oldest due first."""
    rows = db.execute(
        sql.CLAIM, {"endpoint": endpoint, "now": at, "limit": limit, "node": node, "until": until}
    ).fetchall()
    rows.sort(key=lambda row: (row[7], row[0]))
    return [Claimed(int(r[0]), r[1], r[2], bytes(r[3]), int(r[4]), r[5], float(r[6])) for r in rows]


def record(db: Connection, results: Sequence[Result], node: str) -> set[Head]:
    """Store the outcomes of attempts, with an attempt-log row each; return the calls whose delivery ended.

    Only deliveries ``node`` still holds change; the caller lets the next
    delivery of each returned call go.
    """
    by_statement: dict[str, list[dict[str, object]]] = {sql.DELIVERED: [], sql.DEAD: [], sql.RETRY: []}
    finished: set[Head] = set()
    log_rows = []
    for result in results:
        event = result.event
        row: dict[str, object] = {
            "seq": event.seq,
            "endpoint": event.endpoint,
            "node": node,
            "at": result.at,
            "http_status": result.http_status,
            "error": result.error,
            "next_attempt_at": result.next_attempt_at,
        }
        if result.outcome == "delivered":
            by_statement[sql.DELIVERED].append(row)
        elif result.outcome == "dead":
            by_statement[sql.DEAD].append(row)
        else:
            by_statement[sql.RETRY].append(row)
        if result.outcome != "retry":
            finished.add((event.endpoint, event.call_key))
        log_rows.append(attempt_row(result))
    with db.cursor() as cur:
        for statement, rows in by_statement.items():
            if rows:
                cur.executemany(statement, rows)
        cur.executemany(sql.LOG_ATTEMPT, log_rows)
    return finished


def promote(db: Connection, heads: Iterable[Head]) -> None:
    """Make the next delivery of each ``(endpoint, call key)`` ready where none is open."""
    rows = [{"endpoint": endpoint, "call_key": key} for endpoint, key in heads]
    if rows:
        with db.cursor() as cur:
            cur.executemany(sql.PROMOTE, rows)


def delete_events(db: Connection, seqs: Sequence[int]) -> set[Head]:
    """Delete events ``seqs`` and their deliveries; return the calls that had an open delivery among them."""
    if not seqs:
        return set()
    heads = {(str(e), str(k)) for e, k in db.execute(sql.OPEN_OF, (list(seqs),)).fetchall()}
    db.execute(sql.DELETE_EVENTS, (list(seqs),))
    return heads


def count_events(db: Connection) -> int:
    """How many events the store holds (scans the table: at opening only)."""
    row = db.execute(sql.COUNT_EVENTS).fetchone()
    return int(row[0]) if row is not None else 0


def seqs(db: Connection, statement: str, params: dict[str, object] | tuple[object, ...]) -> list[int]:
    """The first column of ``statement``'s rows, as ints (event sequence numbers)."""
    return [int(seq) for (seq,) in db.execute(statement, params).fetchall()]


# -- listings and re-queueing -------------------------------------------------------


def counts(db: Connection, endpoint: str | None = None) -> Counts:
    """Deliveries by state, of one endpoint or all (scans the table)."""
    values = dict.fromkeys(("pending", "retrying", "sending", "dead", "delivered"), 0)
    where, params = ("WHERE endpoint = %s", (endpoint,)) if endpoint is not None else ("", ())
    rows = db.execute(
        f"SELECT status, count(*), count(*) FILTER (WHERE attempts > 0) FROM deliveries {where} GROUP BY status",
        params,
    ).fetchall()
    for status, count, tried in rows:
        if status == "blocked":
            values["pending"] += count
        elif status == "ready":
            values["pending"] += count - tried
            values["retrying"] += tried
        elif status in values:
            values[status] += count
    return Counts(**values)


def _filters(
    statuses: Sequence[Status], endpoint: str | None, ids: Sequence[str] | None, since: float | None
) -> tuple[list[str], list[object]]:
    where: list[str] = ["d.status = ANY(%s)"]
    params: list[object] = [list(statuses)]
    if endpoint is not None:
        where.append("d.endpoint = %s")
        params.append(endpoint)
    if ids is not None:
        where.append("e.id = ANY(%s)")
        params.append(list(ids))
    if since is not None:
        where.append("e.created_at >= %s")
        params.append(since)
    return where, params


def list_events(
    db: Connection,
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
    where, params = _filters(statuses, endpoint, None, since)
    where.append("d.seq > %s")
    params.append(after)
    for clause, value in (("d.call_key = %s", call_key), ("e.type = %s", type_)):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = db.execute(
        "SELECT e.id, d.call_key, d.status, d.attempts, e.created_at, d.next_attempt_at, d.last_status,"
        " d.last_error, CASE WHEN d.compat THEN coalesce(e.compat, e.body) ELSE e.body END, d.seq, e.type,"
        " d.endpoint, d.done_at"
        f" FROM deliveries AS d JOIN events AS e ON e.seq = d.seq WHERE {' AND '.join(where)}"
        ' ORDER BY d.seq, d.endpoint COLLATE "C" LIMIT %s',
        (*params, limit),
    ).fetchall()
    return [EventInfo(*(*row[:8], bytes(row[8]), *row[9:])) for row in rows]


def event_log(db: Connection, after: int, limit: int) -> list[LoggedEvent]:
    """Up to ``limit`` stored events with seq over ``after``, oldest first."""
    rows = db.execute(
        "SELECT seq, id, type, call_key, created_at, body FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
        (after, limit),
    ).fetchall()
    return [LoggedEvent(*(*row[:5], bytes(row[5]))) for row in rows]


def attempts(db: Connection, event_id: str, endpoint: str | None = None) -> list[Attempt]:
    """The attempt log of one event (to one endpoint, or all), oldest first."""
    where, params = ("AND endpoint = %s", (event_id, endpoint)) if endpoint is not None else ("", (event_id,))
    rows = db.execute(
        "SELECT event_id, at, outcome, http_status, error, endpoint, latency_ms, answer FROM attempts"
        f" WHERE event_id = %s {where} ORDER BY seq",
        params,
    ).fetchall()
    return [Attempt(*row) for row in rows]


def requeue(
    db: Connection,
    at: float,
    *,
    endpoint: str | None,
    ids: Sequence[str] | None,
    since: float | None,
    statuses: Sequence[Status],
) -> int:
    """Send deliveries again from ``at``: done ones (in ``statuses``) start over, waiting ones are due at once.

    As :func:`salara.store.queries.requeue`: per-call order holds. Wakes every node's workers when one
    changed (at commit). Returns how many changed.
    """
    where, params = _filters(statuses, endpoint, ids, since)
    chosen = db.execute(
        "SELECT d.seq, d.endpoint, d.call_key FROM deliveries AS d JOIN events AS e ON e.seq = d.seq"
        f" WHERE {' AND '.join(where)} ORDER BY d.seq",
        params,
    ).fetchall()
    with db.cursor() as cur:
        if chosen:
            cur.executemany(sql.REQUEUE, [(at, seq, name) for seq, name, _ in chosen])
    promote(db, {(name, key) for _, name, key in chosen})
    where[0] = "d.status = 'ready' AND d.next_attempt_at > %s"
    params[0] = at
    due = f"SELECT d.seq, d.endpoint FROM deliveries AS d JOIN events AS e ON e.seq = d.seq WHERE {' AND '.join(where)}"
    waiting = db.execute(
        f"UPDATE deliveries AS u SET next_attempt_at = %s WHERE (u.seq, u.endpoint) IN ({due})", (at, *params)
    ).rowcount
    if chosen or waiting:
        db.execute(sql.WAKE)
    return len(chosen) + waiting


# -- call tracking ---------------------------------------------------------------


def write_tracking(db: Connection, tracking: TrackingChanges) -> None:
    """Apply tracking changes: ended calls and removed channels first, then the rows put."""
    with db.cursor() as cur:
        # Deletions first: a channel may be removed and come back in one batch.
        for statement, rows in (
            (sql.END_CALL, [(key,) for key in tracking.ended]),
            (sql.REMOVE_CHANNEL, [(key,) for key in tracking.removed]),
            (sql.PUT_CALL, list(tracking.calls)),
            (sql.PUT_CHANNEL, list(tracking.channels)),
        ):
            if rows:
                cur.executemany(statement, rows)


def load_tracking(db: Connection) -> TrackingChanges:
    """The tracked calls (oldest first) and live channels stored."""
    calls: list[CallRow] = [tuple(row) for row in db.execute(sql.LOAD_CALLS).fetchall()]
    channels: list[ChannelRow] = [tuple(row) for row in db.execute(sql.LOAD_CHANNELS).fetchall()]
    return TrackingChanges(calls=calls, channels=channels)


# -- idempotency keys ------------------------------------------------------------


def remember_key(db: Connection, row: tuple[str, str, str, float, bytes], max_keys: int) -> None:
    """Put ``(scope, key, fingerprint, created_at, result)``; then forget the oldest keys over ``max_keys``."""
    db.execute(sql.PUT_KEY, row)
    counted = db.execute(sql.COUNT_KEYS).fetchone()
    excess = (int(counted[0]) if counted is not None else 0) - max_keys
    if excess > 0:
        db.execute(sql.TRIM_KEYS, (excess,))


def recall_key(db: Connection, scope: str, key: str, expired_before: float) -> tuple[str, bytes] | None:
    """Forget the keys of ``scope`` made before ``expired_before``; then ``key``'s (fingerprint, result), if kept."""
    db.execute(sql.EXPIRE_KEYS, (scope, expired_before))
    row = db.execute(sql.GET_KEY, (scope, key)).fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]))
