"""The durable outbox: call events waiting for the CRM, in a SQLite file.

The SQLite driver of the store (:class:`~salara.store.interface.Store`; its
module doc tells what the rows mean and how events of a call keep their
order). Here claiming is a plain range scan of the ``(status,
next_attempt_at)`` index, and the file holds everything: events, the attempt
log, call tracking (tables ``tracked_calls`` and ``live_channels``) and
idempotency keys (:mod:`salara.store.schema`).

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction
survives the process being killed (SIGKILL); a power loss may lose the last
few (an fsync per commit would cap ingest far below the AMI event rate).
Commits then never wait for the disk; only SQLite's automatic checkpoints
(copying about 4 MB of WAL into the database file) do, for an fsync: a few
milliseconds every few hundred commits. (Checkpointing from a thread instead
lets the WAL grow without bound while commits keep coming.)

Bounds: at most ``max_rows`` events. When an add goes over, delivered rows
are deleted first, then the oldest undelivered ones, which are counted in
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
from salara.store.interface import Store
from salara.store.records import OPEN_STATUSES, Attempt, Claimed, Counts, EventInfo, Result, Status, new_event_id

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL_S: Final = 10.0
"""A full outbox logs its drops at most this often (each message gives the count)."""
MAX_KEYS: Final = 10_000
"""Idempotency keys kept at most by default; the oldest go first."""


class Outbox(Store):
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
        self.dropped = 0
        """Undelivered events dropped because the outbox was full, since opening."""
        self._drops_unlogged = 0
        self._drops_logged_at = float("-inf")
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
            resumed = self._db.execute("UPDATE events SET status = 'ready' WHERE status = 'sending'").rowcount
            # Every call with blocked events has a head; cheap insurance at start.
            keys = self._db.execute("SELECT DISTINCT call_key FROM events WHERE status = 'blocked'")
            self._promote([key for (key,) in keys.fetchall()])
            if self._rows > self.max_rows:
                self._trim()
        if resumed:
            log.info("outbox %s: %d events were in flight when salara stopped; due again", self.path, resumed)

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close the database (idempotent). Logs drops not yet logged."""
        self._log_drops(force=True)
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
        items: Sequence[tuple[str, bytes]],
        *,
        ids: Sequence[str] | None = None,
        now: float | None = None,
        tracking: TrackingChanges | None = None,
    ) -> list[str]:
        """Store events ``(call_key, body)`` in one committed transaction; return their ids.

        ``ids`` gives the ids (from :func:`new_event_id`), else new ones are
        made. Call once per batch (one AMI read), not per event. When the
        outbox goes over ``max_rows``, the oldest rows make room (see the
        module doc). ``tracking`` (call tracking changed by the same read,
        ``started_at`` in Unix seconds) is written in the same transaction.
        Raises ValueError when ``ids`` does not match ``items``,
        :class:`sqlite3.Error` when the file cannot be written (nothing stored).
        """
        if ids is None:
            ids = [new_event_id() for _ in items]
        elif len(ids) != len(items):
            raise ValueError(f"{len(ids)} ids for {len(items)} events")
        if not items and not tracking:
            return []
        at = time.time() if now is None else now
        rows = [(event_id, key, body, at) for event_id, (key, body) in zip(ids, items, strict=True)]
        with self._write():
            if rows:
                self._db.executemany(schema.INSERT, rows)
                self._rows += len(rows)
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
        # Delivered rows first: nothing is lost. Some slack, so that a full
        # outbox does not trim on every add.
        slack = self.max_rows // 100
        self._rows -= self._db.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE status = 'delivered'"
            " ORDER BY done_at LIMIT ?)",
            (excess + slack,),
        ).rowcount
        excess = self._rows - self.max_rows
        if excess <= 0:
            return
        # Rows in flight stay: their POST is under way.
        victims = self._db.execute(
            "SELECT seq, call_key FROM events WHERE status != 'sending' ORDER BY seq LIMIT ?", (excess,)
        ).fetchall()
        self._db.executemany("DELETE FROM events WHERE seq = ?", [(seq,) for seq, _ in victims])
        self._rows -= len(victims)
        self.dropped += len(victims)
        self._drops_unlogged += len(victims)
        self._promote({key for _, key in victims})
        self._log_drops()

    def _log_drops(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._drops_unlogged and (force or now - self._drops_logged_at >= DROP_LOG_INTERVAL_S):
            log.warning(
                "outbox %s is full (max_rows=%d): dropped the %d oldest undelivered events (%d in all)",
                self.path,
                self.max_rows,
                self._drops_unlogged,
                self.dropped,
            )
            self._drops_unlogged = 0
            self._drops_logged_at = now

    # -- the delivery side -----------------------------------------------------

    def claim(self, limit: int, now: float | None = None, *, results: Sequence[Result] = ()) -> list[Claimed]:
        """Mark up to ``limit`` due events as in flight and return them, oldest due first.

        Only the oldest open event of each call is ever claimable (module
        doc). ``results`` are stored first, as by :meth:`record`, in the same
        transaction (one commit per look of the worker).
        """
        at = time.time() if now is None else now
        if limit <= 0 and not results:
            return []
        with self._write():
            self._record(results)
            rows = self._db.execute(schema.CLAIM, (at, limit)).fetchall() if limit > 0 else []
            if rows:
                self._db.executemany("UPDATE events SET status = 'sending' WHERE seq = ?", [(row[0],) for row in rows])
        return [Claimed(*row) for row in rows]

    def record(self, results: Sequence[Result]) -> None:
        """Store the outcomes of attempts in one transaction, with an attempt-log row each.

        ``delivered`` and ``gone`` end the event and let the next event of its
        call go; ``retry`` keeps it at the head of its call until
        ``next_attempt_at``. Results for events no longer in flight (dropped,
        or re-queued by hand) only go to the attempt log.
        """
        if results:
            with self._write():
                self._record(results)

    def _record(self, results: Sequence[Result]) -> None:
        if results:
            self._promote(queries.record(self._db, results))

    def release(self, events: Iterable[Claimed]) -> None:
        """Put claimed events back as due, without counting an attempt (the worker stopped)."""
        rows = [(event.seq,) for event in events]
        if rows:
            with self._write():
                self._db.executemany("UPDATE events SET status = 'ready' WHERE seq = ? AND status = 'sending'", rows)

    def next_due(self) -> float | None:
        """When the earliest ready event is due (Unix seconds), or None when none is waiting."""
        row = self._db.execute("SELECT min(next_attempt_at) FROM events WHERE status = 'ready'").fetchone()
        return cast(float | None, row[0])

    def prune(self, delivered_before: float, attempts_before: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` events delivered before ``delivered_before``; return how many.

        Also deletes attempt-log rows older than ``attempts_before`` and all
        but the newest ``max_rows`` of them.
        """
        with self._write():
            db = self._db
            pruned = db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                " WHERE status = 'delivered' AND done_at < ? ORDER BY done_at LIMIT ?)",
                (delivered_before, limit),
            ).rowcount
            self._rows -= pruned
            db.execute("DELETE FROM attempts WHERE at < ?", (attempts_before,))
            db.execute("DELETE FROM attempts WHERE seq <= (SELECT max(seq) FROM attempts) - ?", (self.max_rows,))
        return pruned

    # -- operators and metrics -------------------------------------------------

    def counts(self) -> Counts:
        """Events by state (scans the table: for metrics and the command line, not per event)."""
        return queries.counts(self._db)

    def depth(self) -> int:
        """Events not done yet (pending, retrying, in flight)."""
        row = self._db.execute("SELECT count(*) FROM events WHERE status IN ('blocked', 'ready', 'sending')").fetchone()
        return int(row[0])

    def list_events(
        self, statuses: Iterable[Status] = (*OPEN_STATUSES, "gone"), *, limit: int = 100
    ) -> list[EventInfo]:
        """Up to ``limit`` events in ``statuses``, oldest first (``salara events list``)."""
        wanted = list(statuses)
        return queries.list_events(self._db, wanted, limit) if wanted else []

    def attempts(self, event_id: str) -> list[Attempt]:
        """The attempt log of one event, oldest first."""
        return queries.attempts(self._db, event_id)

    def retry(self, ids: Iterable[str] | None = None, *, now: float | None = None) -> int:
        """Make events due now again (``salara events retry``); return how many changed.

        Gone events are re-queued (their attempt count starts again; one whose
        call has an open event waits behind it) and events waiting for a
        retry are due at once. ``ids`` limits it to those events; None means
        all. A running worker picks them up at its next look at the outbox.
        """
        at = time.time() if now is None else now
        chosen = None if ids is None else tuple(ids)
        if chosen == ():
            return 0
        with self._write():
            return queries.retry(self._db, chosen, at)

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

    def _promote(self, call_keys: Iterable[str]) -> None:
        self._db.executemany(schema.PROMOTE, [(key,) for key in call_keys])

    def _count_rows(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
