"""The durable outbox: call events waiting for the CRM, in a SQLite file.

Every event salara posts goes in here first (:meth:`Outbox.add`, one
committed transaction per batch) before anything else happens to it; the
delivery worker (:mod:`salara.webhooks`) claims due events, posts them and
records each outcome here. Nothing is lost when the CRM is slow or down, or
when salara is killed.

Each event is a row with a unique id (32 hex digits; the CRM drops
duplicates by it, as delivery is at-least-once), the call key it belongs to
(the call's Linkedid) and its JSON body. Its ``status`` is one of:

- ``blocked``: an earlier event of the same call is not done yet;
- ``ready``: the oldest open event of its call, claimable once
  ``next_attempt_at`` has passed (an event in retry is ``ready`` with
  ``attempts > 0`` and a future ``next_attempt_at``);
- ``sending``: claimed by the worker, a POST in flight; back to ``ready``
  when the outbox is opened again after a crash (at-least-once);
- ``delivered``: the CRM answered 2xx; pruned after a while;
- ``gone``: the CRM answered ``410 Gone``; kept for ``salara events retry``.

Per-call order: of each call key at most one row is ``ready`` or ``sending``,
always its oldest open one; when it becomes delivered or gone, the next
``blocked`` row of that call becomes ready. So a later event never overtakes
an earlier one of its call, a retry holds back its own call and no other, and
claiming is a plain range scan of the ``(status, next_attempt_at)`` index.

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
``max_rows`` of them, pruned by age too.

Call tracking lives in the same file (tables ``tracked_calls`` and
``live_channels``): the calls salara tracks and the live channels a Hangup
may have to be synthesized for after a restart (:mod:`salara.calls`). They
are written by :meth:`Outbox.add` in the same transaction as the events of
the same AMI read, and read back once at start (:meth:`Outbox.load_tracking`).

Times are Unix seconds (``time.time()``): they must survive a restart. The
calls are synchronous and short (a few indexed statements in one
transaction); they are meant for the event-loop thread only. Another process
(the command line) may open the same file at the same time, read-only or
without recovery (see :class:`Outbox`), so as not to disturb the service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, cast

from salara.calls import CallRow, ChannelRow, TrackingChanges

log = logging.getLogger(__name__)

Status = Literal["blocked", "ready", "sending", "delivered", "gone"]
Outcome = Literal["delivered", "retry", "gone"]

OPEN_STATUSES: Final[tuple[Status, ...]] = ("blocked", "ready", "sending")
"""Statuses of events not yet done: the outbox depth."""
SCHEMA_VERSION: Final = 1
DROP_LOG_INTERVAL_S: Final = 10.0
"""A full outbox logs its drops at most this often (each message gives the count)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    call_key TEXT NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at REAL,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS events_due ON events (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS events_call ON events (call_key, status);
CREATE INDEX IF NOT EXISTS events_delivered ON events (done_at) WHERE status = 'delivered';
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_at ON attempts (at);
CREATE TABLE IF NOT EXISTS tracked_calls (
    linkedid TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    exten TEXT NOT NULL,
    source TEXT NOT NULL,
    started_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS live_channels (
    uniqueid TEXT PRIMARY KEY,
    linkedid TEXT NOT NULL,
    name TEXT NOT NULL,
    state INTEGER NOT NULL,
    caller TEXT NOT NULL,
    exten TEXT NOT NULL
) WITHOUT ROWID;
"""

# A new event is ready unless an earlier one of its call is still open.
_INSERT = """
INSERT INTO events (id, call_key, body, status, created_at, next_attempt_at)
VALUES (?1, ?2, ?3,
        CASE WHEN EXISTS (SELECT 1 FROM events
                          WHERE call_key = ?2 AND status IN ('blocked', 'ready', 'sending'))
             THEN 'blocked' ELSE 'ready' END,
        ?4, ?4)
"""
# Make the oldest blocked event of a call ready, unless the call has one open.
_PROMOTE = """
UPDATE events SET status = 'ready'
WHERE seq = (SELECT seq FROM events WHERE call_key = ?1 AND status = 'blocked' ORDER BY seq LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM events WHERE call_key = ?1 AND status IN ('ready', 'sending'))
"""
_CLAIM = """
SELECT seq, id, call_key, body, attempts FROM events
WHERE status = 'ready' AND next_attempt_at <= ?
ORDER BY next_attempt_at, seq LIMIT ?
"""
_DELIVERED = """
UPDATE events SET status = 'delivered', attempts = attempts + 1, done_at = ?2,
                  last_status = ?3, last_error = NULL
WHERE seq = ?1 AND status = 'sending'
"""
_GONE = """
UPDATE events SET status = 'gone', attempts = attempts + 1, done_at = ?2,
                  last_status = ?3, last_error = ?4
WHERE seq = ?1 AND status = 'sending'
"""
_RETRY = """
UPDATE events SET status = 'ready', attempts = attempts + 1, next_attempt_at = ?5,
                  last_status = ?3, last_error = ?4
WHERE seq = ?1 AND status = 'sending'
"""
_LOG_ATTEMPT = "INSERT INTO attempts (event_id, at, outcome, http_status, error) VALUES (?, ?, ?, ?, ?)"
_REQUEUE_GONE = """
UPDATE events SET attempts = 0, done_at = NULL, next_attempt_at = ?2,
       status = CASE WHEN EXISTS (SELECT 1 FROM events AS open
                                  WHERE open.call_key = events.call_key
                                    AND open.status IN ('blocked', 'ready', 'sending'))
                     THEN 'blocked' ELSE 'ready' END
WHERE seq = ?1 AND status = 'gone'
"""


def new_event_id() -> str:
    """A fresh event id: 32 lowercase hex digits (a random UUID).

    :meth:`Outbox.add` makes them itself; call this first when the body must
    carry its own id (the extended payload).
    """
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Claimed:
    """An event handed to the worker: its row ``seq``, id, call key, body and past attempts."""

    seq: int
    id: str
    call_key: str
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one delivery attempt of ``event``, for :meth:`Outbox.record`.

    ``at`` is when the attempt was made; ``http_status`` the CRM's answer
    (None when there was none); ``error`` why it failed ("" on success);
    ``next_attempt_at`` when to try again (``retry`` only).
    """

    event: Claimed
    outcome: Outcome
    at: float
    http_status: int | None = None
    error: str = ""
    next_attempt_at: float = 0.0


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One event as ``salara events list`` shows it. Times are Unix seconds."""

    id: str
    call_key: str
    status: Status
    attempts: int
    created_at: float
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row of the attempt log."""

    event_id: str
    at: float
    outcome: Outcome
    http_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    """Events by state: never tried yet, waiting for a retry, in flight, gone, delivered."""

    pending: int = 0
    retrying: int = 0
    sending: int = 0
    gone: int = 0
    delivered: int = 0
    """Delivered and not yet pruned."""

    @property
    def depth(self) -> int:
        """Events not done yet: pending, retrying and in flight."""
        return self.pending + self.retrying + self.sending


class Outbox:
    """The outbox in the SQLite file at ``path`` (created if missing, mode 0600).

    Opening it makes events that were in flight when the last process died
    due again, and trims it to ``max_rows``: that is for the process that
    delivers (the service). Another process, while the service may run,
    opens it with ``recover=False`` (nothing is changed on opening; events in
    flight stay in flight) or ``readonly=True`` (no write at all; the file
    must exist). Another writer (the command line) may hold the file for up
    to ``busy_timeout_s``. Raises :class:`sqlite3.Error` when the file cannot
    be opened or is not an outbox.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int,
        busy_timeout_s: float = 5.0,
        recover: bool = True,
        readonly: bool = False,
    ) -> None:
        if max_rows <= 0:
            raise ValueError("max_rows must be positive")
        self.path = Path(path)
        self.max_rows = max_rows
        self.readonly = readonly
        self.dropped = 0
        """Undelivered events dropped because the outbox was full, since opening."""
        self._drops_unlogged = 0
        self._drops_logged_at = float("-inf")
        self._rows = 0
        if readonly:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, cached_statements=64)
        else:
            if not self.path.exists():
                # The bodies hold phone numbers: readable by salara's user only.
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(self.path, isolation_level=None, cached_statements=64)
        try:
            self._setup(busy_timeout_s)
            self._rows = self._count_rows()
        except BaseException:
            self._db.close()
            raise
        if recover and not readonly:
            self._recover()

    def _setup(self, busy_timeout_s: float) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if self.readonly:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"{self.path}: outbox schema {version} is newer than this salara's")
            return
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("outbox %s: WAL journal not available (%s)", self.path, mode)
        db.execute("PRAGMA synchronous = NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"{self.path}: outbox schema {version} is newer than this salara's")
        with self._write():
            for statement in _statements(_SCHEMA):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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

    def __enter__(self) -> Outbox:
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
            ids = [uuid.uuid4().hex for _ in items]
        elif len(ids) != len(items):
            raise ValueError(f"{len(ids)} ids for {len(items)} events")
        if not items and not tracking:
            return []
        at = time.time() if now is None else now
        rows = [(event_id, key, body, at) for event_id, (key, body) in zip(ids, items, strict=True)]
        with self._write():
            if rows:
                self._db.executemany(_INSERT, rows)
                self._rows += len(rows)
                if self._rows > self.max_rows:
                    self._trim()
            if tracking:
                self._write_tracking(tracking)
        return list(ids)

    def _write_tracking(self, tracking: TrackingChanges) -> None:
        db = self._db
        # Deletions first: a channel may be removed and come back in one batch.
        if tracking.ended:
            db.executemany("DELETE FROM tracked_calls WHERE linkedid = ?", [(key,) for key in tracking.ended])
        if tracking.removed:
            db.executemany("DELETE FROM live_channels WHERE uniqueid = ?", [(key,) for key in tracking.removed])
        if tracking.calls:
            db.executemany("INSERT OR REPLACE INTO tracked_calls VALUES (?, ?, ?, ?, ?)", tracking.calls)
        if tracking.channels:
            db.executemany("INSERT OR REPLACE INTO live_channels VALUES (?, ?, ?, ?, ?, ?)", tracking.channels)

    def load_tracking(self) -> TrackingChanges:
        """The call tracking stored by the last process (calls and channels; ``started_at`` Unix seconds)."""
        db = self._db
        calls: list[CallRow] = db.execute(
            "SELECT linkedid, caller, exten, source, started_at FROM tracked_calls ORDER BY started_at"
        ).fetchall()
        channels: list[ChannelRow] = db.execute(
            "SELECT uniqueid, linkedid, name, state, caller, exten FROM live_channels"
        ).fetchall()
        return TrackingChanges(calls=calls, channels=channels)

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
            rows = self._db.execute(_CLAIM, (at, limit)).fetchall() if limit > 0 else []
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
        if not results:
            return
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
        db = self._db
        if delivered:
            db.executemany(_DELIVERED, delivered)
        if gone:
            db.executemany(_GONE, gone)
        if retry:
            db.executemany(_RETRY, retry)
        db.executemany(_LOG_ATTEMPT, log_rows)
        self._promote(finished)

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
        values = dict.fromkeys(("pending", "retrying", "sending", "gone", "delivered"), 0)
        rows = self._db.execute("SELECT status, count(*), total(attempts > 0) FROM events GROUP BY status")
        for status, count, tried in rows:
            if status == "blocked":
                values["pending"] += count
            elif status == "ready":
                values["pending"] += count - int(tried)
                values["retrying"] += int(tried)
            elif status in values:
                values[status] += count
        return Counts(**values)

    def depth(self) -> int:
        """Events not done yet (pending, retrying, in flight)."""
        row = self._db.execute("SELECT count(*) FROM events WHERE status IN ('blocked', 'ready', 'sending')").fetchone()
        return int(row[0])

    def list_events(
        self, statuses: Iterable[Status] = (*OPEN_STATUSES, "gone"), *, limit: int = 100
    ) -> list[EventInfo]:
        """Up to ``limit`` events in ``statuses``, oldest first (``salara events list``)."""
        wanted = list(statuses)
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        rows = self._db.execute(
            "SELECT id, call_key, status, attempts, created_at, next_attempt_at, last_status, last_error,"
            f" body FROM events WHERE status IN ({marks}) ORDER BY seq LIMIT ?",
            (*wanted, limit),
        )
        return [EventInfo(*row) for row in rows.fetchall()]

    def attempts(self, event_id: str) -> list[Attempt]:
        """The attempt log of one event, oldest first."""
        rows = self._db.execute(
            "SELECT event_id, at, outcome, http_status, error FROM attempts WHERE event_id = ? ORDER BY seq",
            (event_id,),
        )
        return [Attempt(*row) for row in rows.fetchall()]

    def retry(self, ids: Iterable[str] | None = None, *, now: float | None = None) -> int:
        """Make events due now again (``salara events retry``); return how many changed.

        Gone events are re-queued (their attempt count starts again; one whose
        call has an open event waits behind it) and events waiting for a
        retry are due at once. ``ids`` limits it to those events; None means
        all. A running worker picks them up at its next look at the outbox.
        """
        at = time.time() if now is None else now
        where = ""
        params: tuple[str, ...] = ()
        if ids is not None:
            chosen = tuple(ids)
            if not chosen:
                return 0
            where, params = f" AND id IN ({', '.join('?' * len(chosen))})", chosen
        with self._write():
            db = self._db
            gone = db.execute(f"SELECT seq FROM events WHERE status = 'gone'{where} ORDER BY seq", params)
            # One by one in event order: each sees whether its call has an open event.
            rows = [(seq, at) for (seq,) in gone.fetchall()]
            db.executemany(_REQUEUE_GONE, rows)
            waiting = db.execute(
                f"UPDATE events SET next_attempt_at = ? WHERE status = 'ready' AND next_attempt_at > ?{where}",
                (at, at, *params),
            ).rowcount
        return len(rows) + waiting

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
        self._db.executemany(_PROMOTE, [(key,) for key in call_keys])

    def _count_rows(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
