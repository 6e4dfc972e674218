"""The store on PostgreSQL: the same events, deliveries and keys as the SQLite file, shared by salara nodes.

The PostgreSQL driver of the store (:class:`~salara.store.interface.Store`;
its module doc tells what the rows mean and how events of a call keep their
order), chosen by ``[outbox] url = postgresql://...``. Its tables are made and
changed by the plain SQL migrations of :mod:`salara.store.migrate`
(``salara db migrate``), never on opening; a database not migrated to this
salara's version is refused.

Claims. A node claims due deliveries with ``SELECT ... FOR UPDATE SKIP
LOCKED`` (two nodes claiming at once never get the same one, nor wait for
each other) and holds each for a *lease* of ``lease_s`` seconds: the row
names the node (``claimed_by``) and the end of its lease (``lease_until``).
While its worker keeps looking at the store, the node renews the leases of
what it has in flight (every third of a lease). A node that dies mid-delivery
stops renewing; once its leases lapse, another node's claim takes those
deliveries over, with the same ids and attempt counts (at-least-once: the
CRM drops duplicates by id). Outcomes and releases change a delivery only
while the reporting node still holds it: a node that comes back after its
lease was taken over only adds to the attempt log. A node that restarts
under the same name (``node``) makes its own claims due again at once, as
the SQLite store does on opening. The renewal does not wait for a POST to
end, so ``lease_s`` need only be well above the longest gap between two
looks of a worker (its idle look, 5 s) plus a stalled event loop.

Sync, not async. The store's methods stay synchronous and run on the event
loop thread, on one sync :class:`psycopg.Connection` (psycopg 3) in
autocommit mode with explicit transactions. Each method is one short
transaction of a few indexed statements: a round trip to a database on the
same host or LAN is about 0.1 ms, and an add commits in under 1 ms on a
local cluster (SQLite: about 0.3 ms), which the event loop already waits for
today. Staying synchronous keeps the protocol's main guarantee simple (an
event is committed before the pipeline does anything else with it, no other
task running in between) and no caller changes. The cost: a slow database
stalls the event loop, so every statement is bounded by
``statement_timeout_s`` and a connection attempt by ``connect_timeout_s``; a
database several ms away would need the protocol made async (psycopg's
``AsyncConnection``), a change of every caller.

Errors: every :class:`psycopg.Error` is raised as
:class:`~salara.store.interface.StoreFailure` (the transaction rolled back:
nothing changed). A connection found broken is opened again at the next call;
after a failed attempt, calls fail at once for :data:`RECONNECT_PAUSE_S`.

Bounds: as the SQLite store's (``max_rows`` events, ``max_keys`` keys), by
an event count kept in memory from opening. Both it and the event log's
order (sequence numbers are given at insert, seen at commit) assume one
node adds at a time: the leading one. Times are Unix seconds; the URL's
password never appears in :attr:`PostgresStore.name`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Final, Self

import psycopg

from salara.calls.tracking import TrackingChanges
from salara.store import migrate, pgqueries
from salara.store import pgstatements as sql
from salara.store.drops import Drops
from salara.store.interface import Store, StoreFailure
from salara.store.leadership import FENCE
from salara.store.pginspection import PgInspection, safe_name
from salara.store.records import (
    DEFAULT_ENDPOINT,
    Claimed,
    NewEvent,
    Result,
    Status,
    new_event_id,
)

log = logging.getLogger(__name__)

MAX_KEYS: Final = 10_000
"""Idempotency keys kept at most by default; the oldest go first."""
RECONNECT_PAUSE_S: Final = 1.0
"""After a failed connection attempt, calls fail at once for this long, without trying again."""


class PostgresStore(PgInspection, Store):
    """The store in the PostgreSQL database at ``url`` (libpq's URI or key=value form), migrated already.

    ``node`` names this node's claims (empty: the host name); ``lease_s``
    is how long a claim holds a delivery (module doc). ``recover`` (the
    service) makes this node's claims due again and trims to ``max_rows``
    on opening; the command line opens with ``recover=False`` (nothing
    changed) or ``readonly=True`` (every write refused). Raises
    :class:`~salara.store.interface.StoreFailure` when the database cannot
    be reached or is not migrated to this salara's schema, ValueError on a
    bound that is not positive.
    """

    def __init__(
        self,
        url: str,
        *,
        max_rows: int,
        node: str = "",
        lease_s: float = 60.0,
        recover: bool = True,
        readonly: bool = False,
        max_keys: int = MAX_KEYS,
        connect_timeout_s: float = 2.0,
        statement_timeout_s: float = 5.0,
    ) -> None:
        if max_rows <= 0 or max_keys <= 0 or lease_s <= 0:
            raise ValueError("max_rows, max_keys and lease_s must be positive")
        self._url = url
        self.max_rows = max_rows
        self.max_keys = max_keys
        self.node = node or socket.gethostname()
        self.lease_s = lease_s
        self.readonly = readonly
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_s = statement_timeout_s
        self.drops = Drops(safe_name(url), max_rows)
        self.recovered_from: str | None = None  # a database is never set aside (a damaged SQLite file is)
        self._renewed: dict[str, float] = {}
        self.fence_pid: int | None = None
        """Two nodes: an add is refused unless this backend holds the leader lock (:mod:`salara.store.leadership`)."""
        self._db: pgqueries.Connection | None = None
        self._down_until = float("-inf")
        with self._guard():
            self._rows = pgqueries.count_events(self._connection())
        if recover and not readonly:
            self._recover()

    @property
    def dropped(self) -> int:
        """Undelivered events dropped because the store was full, since opening."""
        return self.drops.total

    @property
    def name(self) -> str:
        """The database, for log messages (no password)."""
        return safe_name(self._url)

    def _connection(self) -> pgqueries.Connection:
        """The open connection, opened again when it broke. Raises :class:`psycopg.Error`, or SchemaMismatch."""
        db = self._db
        if db is not None and not db.closed and not db.broken:
            return db
        self._db = None
        if db is not None:
            db.close()
        if time.monotonic() < self._down_until:
            raise StoreFailure(f"{self.name}: unreachable (the last connection attempt failed); trying again shortly")
        try:
            db = psycopg.connect(self._url, autocommit=True, connect_timeout=max(2, round(self.connect_timeout_s)))
        except psycopg.Error:
            # The event loop must not wait for a connection attempt on every call while the database is down.
            self._down_until = time.monotonic() + RECONNECT_PAUSE_S
            raise
        try:
            db.execute(
                "SELECT set_config('statement_timeout', %s, false)", (f"{int(self.statement_timeout_s * 1000)}",)
            )
            if self.readonly:
                db.execute("SET default_transaction_read_only = on")
            migrate.check(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _recover(self) -> None:
        with self._write() as db:
            resumed = db.execute(sql.RESUME, (self.node,)).rowcount
            pgqueries.promote(db, [(str(e), str(k)) for e, k in db.execute(sql.HEADS).fetchall()])
            if self._rows > self.max_rows:
                self._trim(db)
        if resumed:
            log.info(
                "outbox %s: %d events node %s had in flight when it stopped; due again", self.name, resumed, self.node
            )

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent). Logs drops not yet logged."""
        self.drops.log(force=True)
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the producer side -----------------------------------------------------

    def add(
        self,
        items: Sequence[NewEvent | tuple[str, bytes]],
        *,
        ids: Sequence[str] | None = None,
        now: float | None = None,
        tracking: TrackingChanges | None = None,
    ) -> list[str]:
        """Store events in one committed transaction; return their ids (as :meth:`Store.add`).

        Raises ValueError when ``ids`` does not match ``items``,
        :class:`~salara.store.interface.StoreFailure` when nothing was stored.
        """
        at = time.time() if now is None else now
        if ids is None:
            ids = [new_event_id(at) for _ in items]
        elif len(ids) != len(items):
            raise ValueError(f"{len(ids)} ids for {len(items)} events")
        if not items and not tracking:
            return []
        events = [
            (event_id, item if isinstance(item, NewEvent) else NewEvent(*item))
            for event_id, item in zip(ids, items, strict=True)
        ]
        with self._write() as db:
            if self.fence_pid is not None and db.execute(FENCE, (self.fence_pid,)).fetchone() is None:
                raise StoreFailure(f"{self.name}: this node no longer leads (another node stores the events)")
            if events:
                pgqueries.add(db, events, at)
                self._rows += len(events)
                if self._rows > self.max_rows:
                    self._trim(db)
            if tracking:
                pgqueries.write_tracking(db, tracking)
        return list(ids)

    def recount(self) -> None:
        """Count the stored events again (the bound's count): a node taking the lead over, where others added."""
        with self._guard():
            self._rows = pgqueries.count_events(self._connection())

    def load_tracking(self) -> TrackingChanges:
        """The call tracking stored (calls oldest first, and channels; ``started_at`` Unix seconds)."""
        with self._guard():
            return pgqueries.load_tracking(self._connection())

    def _trim(self, db: pgqueries.Connection) -> None:
        excess = self._rows - self.max_rows
        slack = self.max_rows // 100
        done = pgqueries.seqs(db, sql.DONE_EVENTS, {"before": float("inf"), "limit": excess + slack})
        pgqueries.delete_events(db, done)
        self._rows -= len(done)
        excess = self._rows - self.max_rows
        if excess <= 0:
            return
        victims = pgqueries.seqs(db, sql.VICTIMS, (excess,))
        heads = pgqueries.delete_events(db, victims)
        self._rows -= len(victims)
        self.drops.add(len(victims))
        pgqueries.promote(db, heads)

    # -- the delivery side -----------------------------------------------------

    def claim(
        self,
        limit: int,
        now: float | None = None,
        *,
        results: Sequence[Result] = (),
        endpoint: str = DEFAULT_ENDPOINT,
    ) -> list[Claimed]:
        """Claim up to ``limit`` due deliveries to ``endpoint`` for :attr:`lease_s`, oldest due first.

        Also those another node's lapsed lease left in flight. ``results``
        are stored first, and this node's leases at ``endpoint`` renewed
        when a third of a lease went by, in the same transaction.
        """
        at = time.time() if now is None else now
        renew = at - self._renewed.get(endpoint, float("-inf")) >= self.lease_s / 3
        if limit <= 0 and not results and not renew:
            return []
        claimed: list[Claimed] = []
        with self._write() as db:
            self._record(db, results)
            if renew:
                db.execute(sql.RENEW, {"until": at + self.lease_s, "endpoint": endpoint, "node": self.node})
            if limit > 0:
                claimed = pgqueries.claim(db, endpoint, at, limit, node=self.node, until=at + self.lease_s)
        if renew:
            self._renewed[endpoint] = at
        return claimed

    def record(self, results: Sequence[Result]) -> None:
        """Store the outcomes of attempts in one transaction, with an attempt-log row each (as :meth:`Store.record`).

        Deliveries this node no longer holds (taken over after its lease)
        only get the attempt-log row.
        """
        if results:
            with self._write() as db:
                self._record(db, results)

    def _record(self, db: pgqueries.Connection, results: Sequence[Result]) -> None:
        if results:
            pgqueries.promote(db, pgqueries.record(db, results, self.node))

    def release(self, events: Iterable[Claimed]) -> None:
        """Put deliveries this node claimed back as due, without counting an attempt (the worker stopped)."""
        rows = [{"seq": event.seq, "endpoint": event.endpoint, "node": self.node} for event in events]
        if rows:
            with self._write() as db, db.cursor() as cur:
                cur.executemany(sql.RELEASE, rows)

    def next_due(self, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
        """When the earliest ready delivery to ``endpoint`` is due, or another node's claim lapses (Unix s); None."""
        with self._guard():
            row = self._connection().execute(sql.NEXT_DUE, {"endpoint": endpoint, "node": self.node}).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def prune(self, delivered_before: float, attempts_before: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` events delivered everywhere before ``delivered_before`` (or stored, if none).

        Also deletes attempt-log rows older than ``attempts_before`` and all
        but the newest ``max_rows`` of them. Returns how many events went.
        """
        with self._write() as db:
            done = pgqueries.seqs(db, sql.DONE_EVENTS, {"before": delivered_before, "limit": limit})
            pgqueries.delete_events(db, done)
            self._rows -= len(done)
            db.execute(sql.PRUNE_ATTEMPTS, (attempts_before,))
            db.execute(sql.TRIM_ATTEMPTS, (self.max_rows,))
        return len(done)

    # -- endpoints ---------------------------------------------------------------

    def disable(self, endpoint: str, reason: str, now: float | None = None) -> None:
        """Mark ``endpoint`` disabled (it answered ``410 Gone``) until :meth:`enable`, for every node."""
        with self._write() as db:
            db.execute(sql.DISABLE, (endpoint, time.time() if now is None else now, reason))

    def enable(self, endpoint: str) -> bool:
        """Enable ``endpoint`` again; False when it was not disabled."""
        with self._write() as db:
            return db.execute(sql.ENABLE, (endpoint,)).rowcount > 0

    def retry(
        self,
        ids: Iterable[str] | None = None,
        *,
        now: float | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        delivered: bool = False,
    ) -> int:
        """Make dead (and with ``delivered``, delivered) deliveries due again; as :meth:`Store.retry`."""
        at = time.time() if now is None else now
        chosen = None if ids is None else tuple(ids)
        if chosen == ():
            return 0
        statuses: tuple[Status, ...] = ("dead", "delivered") if delivered else ("dead",)
        with self._write() as db:
            return pgqueries.requeue(db, at, endpoint=endpoint, ids=chosen, since=since, statuses=statuses)

    # -- idempotency keys --------------------------------------------------------

    def remember_key(self, scope: str, key: str, fingerprint: str, created_at: float, result: bytes) -> None:
        """Keep ``result`` of the request ``fingerprint`` made with ``key`` in ``scope`` (as in the protocol)."""
        with self._write() as db:
            pgqueries.remember_key(db, (scope, key, fingerprint, created_at, result), self.max_keys)

    def recall_key(self, scope: str, key: str, now: float, window_s: float) -> tuple[str, bytes] | None:
        """``(fingerprint, result)`` kept for ``key`` in ``scope`` within ``window_s`` before ``now``, else None.

        Deletes the expired keys of ``scope`` (a write: refused on a read-only store).
        """
        with self._write() as db:
            return pgqueries.recall_key(db, scope, key, now - window_s)

    # -- helpers ---------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[pgqueries.Connection]:
        """One transaction on the connection; rolled back (and the event count read again) when it fails."""
        rows = self._rows
        try:
            with self._guard():
                db = self._connection()
                with db.transaction():
                    yield db
        except BaseException:
            self._rows = rows
            raise
