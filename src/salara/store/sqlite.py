"""The durable outbox: call events waiting for the CRM, in a SQLite file.

The SQLite driver of the store (:class:`~salara.store.interface.Store`; its
module doc tells what the rows mean and how events of a call keep their
order). Here claiming is a plain range scan of the ``(status, endpoint,
next_attempt_at)`` index of deliveries, and the file holds everything:
events, their deliveries per endpoint, the attempt log, the endpoints
disabled by a ``410 Gone``, call tracking (tables ``tracked_calls`` and
``live_channels``) and idempotency keys (:mod:`salara.store.schema`).

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction
survives the process being killed (SIGKILL); a power loss may lose the last
few (an fsync per commit would cap ingest far below the AMI event rate).
Commits then never wait for the disk; only SQLite's automatic checkpoints
(copying about 4 MB of WAL into the database file) do, for an fsync: a few
milliseconds every few hundred commits. (Checkpointing from a thread instead
lets the WAL grow without bound while commits keep coming.)

Bounds: at most ``max_rows`` events. When an add goes over, events whose
deliveries are all done are deleted first, then the oldest undelivered ones, which are counted in
:attr:`Outbox.dropped` and logged (never silently). The attempt log keeps one
row per delivery attempt (time, outcome, HTTP status, error), at most
``max_rows`` of them, pruned by age too. At most ``max_keys`` idempotency
keys, the oldest forgotten first.

Times are Unix seconds (``time.time()``): they must survive a restart. The
calls are synchronous and short (a few indexed statements in one
transaction); they are meant for the event-loop thread only. Another process
(the command line) may open the same file at the same time, read-only or
without recovery (see :class:`Outbox`), so as not to disturb the service.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self, cast

from salara.calls.tracking import TrackingChanges
from salara.store import queries, schema
from salara.store import statements as sql
from salara.store.drops import Drops
from salara.store.inspection import Inspection
from salara.store.interface import Store
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


class Outbox(Inspection, Store):
    """The outbox in the SQLite file at ``path`` (created if missing, mode 0600).

    Opening it makes events that were in flight when the last process died
    due again, and trims it to ``max_rows``: that is for the process that
    delivers (the service). Another process, while the service may run,
    opens it with ``recover=False`` (nothing is changed on opening; events in
    flight stay in flight) or ``readonly=True`` (no write at all; the file
    must exist). Another writer (the command line) may hold the file for up
    to ``busy_timeout_s``. Raises :class:`sqlite3.Error` when the file cannot
    be opened or is not an outbox.

    The service's opening (``recover=True``, not ``readonly``) of a file
    SQLite finds damaged (not a database, or corrupt) does not fail: the
    file is moved aside with :func:`~salara.store.schema.set_aside` (kept),
    an ERROR names both paths, :attr:`recovered_from` is the path it went
    to, and a fresh outbox starts. The other openings raise, leaving the
    file where it is.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int,
        busy_timeout_s: float = 5.0,
        recover: bool = True,
        readonly: bool = False,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if max_rows <= 0:
            raise ValueError("max_rows must be positive")
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_keys = max_keys
        self.readonly = readonly
        self.drops = Drops(str(self.path), max_rows)
        self._rows = 0
        self.recovered_from: str | None = None
        """Where a damaged file found at opening was moved (the service only), else None."""
        service = recover and not readonly
        try:
            self._open(busy_timeout_s, recover=service, set_aside_damaged=service)
        except schema.DamagedFile as exc:
            self.recovered_from = str(exc.aside)
            log.error(
                "outbox %s is damaged (%s): moved it aside to %s (kept, with its -wal and -shm) and started"
                " an empty outbox; the events it held are not delivered",
                self.path,
                exc.reason,
                exc.aside,
            )
            self._open(busy_timeout_s, recover=True, set_aside_damaged=False)

    @property
    def dropped(self) -> int:
        """Undelivered events dropped because the outbox was full, since opening."""
        return self.drops.total

    @property
    def name(self) -> str:
        """The file's path, for log messages."""
        return str(self.path)

    def _open(self, busy_timeout_s: float, *, recover: bool, set_aside_damaged: bool) -> None:
        def check(db: sqlite3.Connection) -> None:
            self._db = db
            self._rows = self._count_rows()
            if recover:
                self._recover()

        schema.connect(
            self.path,
            readonly=self.readonly,
            busy_timeout_s=busy_timeout_s,
            check=check,
            set_aside_damaged=set_aside_damaged,
        )

    def _recover(self) -> None:
        with self._write():
            resumed = self._db.execute(sql.RESUME).rowcount
            # Every call with blocked deliveries has a head; cheap insurance at start.
            queries.promote(self._db, self._db.execute(sql.HEADS).fetchall())
            if self._rows > self.max_rows:
                self._trim()
        if resumed:
            log.info("outbox %s: %d events were in flight when salara stopped; due again", self.path, resumed)

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close the database (idempotent). Logs drops not yet logged."""
        self.drops.log(force=True)
        self._db.close()

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
        """Store events in one committed transaction; return their ids.

        An item is a :class:`~salara.store.records.NewEvent` or ``(call key,
        body)``: that body for the ``default`` endpoint. ``ids`` gives the ids
        (from :func:`new_event_id`), else new ones are made. Call once per
        batch (the reads of one batch window), not per event. When the outbox goes over
        ``max_rows``, the oldest rows make room (see the module doc).
        ``tracking`` (call tracking changed by the same reads, ``started_at``
        in Unix seconds) is written in the same transaction. Raises
        ValueError when ``ids`` does not match ``items``,
        :class:`sqlite3.Error` when the file cannot be written (nothing stored).
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
        with self._write():
            if events:
                queries.add(self._db, events, at)
                self._rows += len(events)
                if self._rows > self.max_rows:
                    self._trim()
            if tracking:
                queries.write_tracking(self._db, tracking)
        return list(ids)

    def load_tracking(self) -> TrackingChanges:
        """The call tracking stored by the last process (calls and channels; ``started_at`` Unix seconds)."""
        return queries.load_tracking(self._db)

    def _trim(self) -> None:
        excess = self._rows - self.max_rows
        # Events done everywhere first: nothing is lost. Some slack, so that a
        # full outbox does not trim on every add.
        slack = self.max_rows // 100
        done = [seq for (seq,) in self._db.execute(sql.DONE_EVENTS, (float("inf"), excess + slack)).fetchall()]
        queries.delete_events(self._db, done)
        self._rows -= len(done)
        excess = self._rows - self.max_rows
        if excess <= 0:
            return
        # Events with a delivery in flight stay: its POST is under way.
        victims = [seq for (seq,) in self._db.execute(sql.VICTIMS, (excess,)).fetchall()]
        heads = queries.delete_events(self._db, victims)
        self._rows -= len(victims)
        self.drops.add(len(victims))
        queries.promote(self._db, heads)

    # -- the delivery side -----------------------------------------------------

    def claim(
        self,
        limit: int,
        now: float | None = None,
        *,
        results: Sequence[Result] = (),
        endpoint: str = DEFAULT_ENDPOINT,
    ) -> list[Claimed]:
        """Mark up to ``limit`` due deliveries to ``endpoint`` as in flight and return them, oldest due first.

        Only the oldest open delivery of each call is ever claimable (module
        doc). Each comes with the body its endpoint takes. ``results`` are
        stored first, as by :meth:`record`, in the same transaction (one
        commit per look of the worker).
        """
        at = time.time() if now is None else now
        if limit <= 0 and not results:
            return []
        with self._write():
            self._record(results)
            rows = self._db.execute(sql.CLAIM, (endpoint, at, limit)).fetchall() if limit > 0 else []
            if rows:
                self._db.executemany(sql.SENDING, [(row[0], endpoint) for row in rows])
        return [Claimed(*row) for row in rows]

    def record(self, results: Sequence[Result]) -> None:
        """Store the outcomes of attempts in one transaction, with an attempt-log row each.

        ``delivered`` and ``dead`` end the delivery and let the next one of
        its call to that endpoint go; ``retry`` keeps it at the head of its
        call until ``next_attempt_at``. Results for deliveries no longer in
        flight (dropped, or re-queued by hand) only go to the attempt log.
        """
        if results:
            with self._write():
                self._record(results)

    def _record(self, results: Sequence[Result]) -> None:
        if results:
            queries.promote(self._db, queries.record(self._db, results))

    def release(self, events: Iterable[Claimed]) -> None:
        """Put claimed deliveries back as due, without counting an attempt (the worker stopped)."""
        rows = [(event.seq, event.endpoint) for event in events]
        if rows:
            with self._write():
                self._db.executemany(sql.RELEASE, rows)

    def next_due(self, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
        """When the earliest ready delivery to ``endpoint`` is due (Unix seconds), or None when none is waiting."""
        row = self._db.execute(sql.NEXT_DUE, (endpoint,)).fetchone()
        return cast(float | None, row[0])

    def prune(self, delivered_before: float, attempts_before: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` events delivered everywhere before ``delivered_before`` (or stored, if none).

        Also deletes attempt-log rows older than ``attempts_before`` and all
        but the newest ``max_rows`` of them. Returns how many events went.
        """
        with self._write():
            db = self._db
            done = [seq for (seq,) in db.execute(sql.DONE_EVENTS, (delivered_before, limit)).fetchall()]
            queries.delete_events(db, done)
            self._rows -= len(done)
            db.execute("DELETE FROM attempts WHERE at < ?", (attempts_before,))
            db.execute("DELETE FROM attempts WHERE seq <= (SELECT max(seq) FROM attempts) - ?", (self.max_rows,))
        return len(done)

    # -- endpoints ---------------------------------------------------------------

    def disable(self, endpoint: str, reason: str, now: float | None = None) -> None:
        """Mark ``endpoint`` disabled (it answered ``410 Gone``): its deliveries wait until :meth:`enable`."""
        with self._write():
            self._db.execute(sql.DISABLE, (endpoint, time.time() if now is None else now, reason))

    def enable(self, endpoint: str) -> bool:
        """Enable ``endpoint`` again; False when it was not disabled."""
        with self._write():
            return self._db.execute(sql.ENABLE, (endpoint,)).rowcount > 0

    def retry(
        self,
        ids: Iterable[str] | None = None,
        *,
        now: float | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        delivered: bool = False,
    ) -> int:
        """Make deliveries due now again (``salara events retry``, a replay); return how many changed.

        Dead deliveries are re-queued (their attempt count starts again; one
        whose call has an open delivery waits behind it), and with
        ``delivered`` the delivered ones too (a replay); those waiting for a
        retry are due at once. ``ids`` (event ids), ``endpoint`` and ``since``
        (stored since, Unix s) choose them; None means all. A running worker
        picks them up at its next look at the outbox.
        """
        at = time.time() if now is None else now
        chosen = None if ids is None else tuple(ids)
        if chosen == ():
            return 0
        statuses: tuple[Status, ...] = ("dead", "delivered") if delivered else ("dead",)
        with self._write():
            return queries.requeue(self._db, at, endpoint=endpoint, ids=chosen, since=since, statuses=statuses)

    # -- idempotency keys --------------------------------------------------------

    def remember_key(self, scope: str, key: str, fingerprint: str, created_at: float, result: bytes) -> None:
        """Keep ``result`` of the request ``fingerprint`` made with ``key`` in ``scope`` (one transaction).

        ``created_at`` is Unix seconds. A key remembered again is replaced;
        past ``max_keys`` the oldest keys are forgotten. Raises
        :class:`sqlite3.Error` when the file cannot be written (nothing kept).
        """
        with self._write():
            queries.remember_key(self._db, (scope, key, fingerprint, created_at, result), self.max_keys)

    def recall_key(self, scope: str, key: str, now: float, window_s: float) -> tuple[str, bytes] | None:
        """``(fingerprint, result)`` remembered for ``key`` in ``scope`` at most ``window_s`` seconds before ``now``.

        None when there is none, or it is older: the keys of ``scope`` older
        than the window are deleted (so this writes; not on a read-only
        outbox). Raises :class:`sqlite3.Error` when the file cannot be written.
        """
        with self._write():
            return queries.recall_key(self._db, scope, key, now - window_s)

    # -- helpers ---------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock at once, so a concurrent writer (the
        # command line) makes us wait here, never fail halfway.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):
                self._rows = self._count_rows()
            raise
        self._db.execute("COMMIT")

    def _count_rows(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
