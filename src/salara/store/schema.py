"""The SQLite store's file: its tables, its schema version and the move from older versions.

:func:`connect` opens a file and makes its tables (the statements that
change rows are :mod:`salara.store.statements`).
``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`; a file of a newer
version is refused, a file of version 1 is moved to version 2 when the
service opens it (its events keep their ids, bodies and states, as
deliveries to the ``default`` endpoint). The version counts changes older code cannot live with
(a column it reads changed, a row it writes means something else); a table
older code never reads (``idempotency_keys``) does not raise it, so going
back to an older salara keeps the file.

A file SQLite finds damaged (:func:`is_damaged`) can be moved out of the
way with :func:`set_aside`, kept for inspection, so that a fresh one starts.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 2
"""1: one delivery state per event (one endpoint). 2: events apart from their deliveries, per endpoint."""

DAMAGED_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
"""SQLite's primary result codes for a file that is not a database or whose content is corrupt."""
SIDE_FILES: Final = ("-wal", "-shm")
"""What SQLite keeps beside the database file in WAL mode (the name plus these suffixes)."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    call_key TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL,
    compat BLOB,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_created ON events (created_at);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    call_key TEXT NOT NULL,
    status TEXT NOT NULL,
    compat INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at REAL,
    last_status INTEGER,
    last_error TEXT,
    PRIMARY KEY (seq, endpoint)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, endpoint, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_call ON deliveries (endpoint, call_key, status);
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL DEFAULT 'default',
    event_id TEXT NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    error TEXT,
    latency_ms REAL,
    answer TEXT
);
CREATE INDEX IF NOT EXISTS attempts_at ON attempts (at);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts (event_id);
CREATE TABLE IF NOT EXISTS endpoint_state (
    endpoint TEXT PRIMARY KEY,
    disabled_at REAL,
    reason TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tracked_calls (
    linkedid TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    exten TEXT NOT NULL,
    source TEXT NOT NULL,
    started_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tracked_call_state (
    linkedid TEXT PRIMARY KEY,
    client_state TEXT,
    answered_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS live_channels (
    uniqueid TEXT PRIMARY KEY,
    linkedid TEXT NOT NULL,
    name TEXT NOT NULL,
    state INTEGER NOT NULL,
    caller TEXT NOT NULL,
    exten TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL,
    result BLOB NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_keys_at ON idempotency_keys (created_at);
"""
"""The tables and indexes; every statement may run again on an existing file."""

FROM_VERSION_1: Final = """
DROP INDEX IF EXISTS events_due;
DROP INDEX IF EXISTS events_call;
DROP INDEX IF EXISTS events_delivered;
DROP INDEX IF EXISTS attempts_at;
ALTER TABLE events RENAME TO events_v1;
ALTER TABLE attempts RENAME TO attempts_v1
"""
"""Version 1's tables set aside before version 2's are made; :data:`FROM_VERSION_1_COPY` fills those."""
FROM_VERSION_1_COPY: Final = """
INSERT INTO events (seq, id, call_key, type, body, compat, created_at)
SELECT seq, id, call_key,
       CASE WHEN json_valid(body) THEN coalesce(json_extract(body, '$.type'), json_extract(body, '$.event'), '')
            ELSE '' END,
       body, body, created_at
FROM events_v1;
INSERT INTO deliveries (seq, endpoint, call_key, status, created_at, next_attempt_at, attempts, done_at,
                        last_status, last_error)
SELECT seq, 'default', call_key, CASE status WHEN 'gone' THEN 'dead' ELSE status END, created_at,
       next_attempt_at, attempts, done_at, last_status, last_error
FROM events_v1;
INSERT INTO attempts (seq, endpoint, event_id, at, outcome, http_status, error)
SELECT seq, 'default', event_id, at, CASE outcome WHEN 'gone' THEN 'dead' ELSE outcome END, http_status, error
FROM attempts_v1;
DROP TABLE events_v1;
DROP TABLE attempts_v1
"""
"""An event of version 1 keeps its one body as both forms: the endpoint it was stored for sends the same bytes."""


def statements(script: str) -> list[str]:
    """The statements of ``script``, split at semicolons (none of ours has one inside)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]


class DamagedFile(sqlite3.DatabaseError):
    """The database file was damaged and :func:`connect` moved it aside to ``aside``; ``reason`` is SQLite's."""

    def __init__(self, path: Path, aside: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}; moved aside to {aside}")
        self.path = path
        self.aside = aside
        self.reason = reason


def connect(
    path: Path,
    *,
    readonly: bool,
    busy_timeout_s: float,
    check: Callable[[sqlite3.Connection], None] | None = None,
    set_aside_damaged: bool = False,
) -> sqlite3.Connection:
    """The outbox file at ``path``, open in autocommit mode (transactions are the caller's).

    Unless ``readonly``, the file is created if missing (mode 0600, its
    directory 0700), put in WAL mode and given the tables of this version.
    ``readonly`` writes nothing; the file must exist. ``check(db)`` then
    runs on the open database (the caller's first reads); what it raises
    closes the database and goes on. Raises :class:`sqlite3.Error` when the
    file cannot be opened, is not an outbox, or its schema is newer than
    this salara's.

    With ``set_aside_damaged``, a file SQLite finds damaged while opening or
    checking (:func:`is_damaged`) is moved aside with :func:`set_aside`
    before the database is closed (closing would delete its ``-wal`` and
    ``-shm``), and :class:`DamagedFile` is raised; OSError when it cannot be
    moved.
    """
    if readonly:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, cached_statements=64)
    else:
        if not path.exists():
            # The bodies hold phone numbers: readable by salara's user only.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, isolation_level=None, cached_statements=64)
    try:
        _setup(db, path, readonly=readonly, busy_timeout_s=busy_timeout_s)
        if check is not None:
            check(db)
    except BaseException as exc:
        aside = None
        try:
            if set_aside_damaged and is_damaged(exc):
                aside = set_aside(path)
        finally:
            db.close()
        if aside is not None:
            raise DamagedFile(path, aside, str(exc)) from exc
        raise
    return db


def _setup(db: sqlite3.Connection, path: Path, *, readonly: bool, busy_timeout_s: float) -> None:
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    if readonly:
        _check_version(db, path)
        return
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.warning("outbox %s: WAL journal not available (%s)", path, mode)
    db.execute("PRAGMA synchronous = NORMAL")
    version = _check_version(db, path)
    db.execute("BEGIN IMMEDIATE")
    try:
        migrate = version == 1
        if migrate:
            for statement in statements(FROM_VERSION_1):
                db.execute(statement)
        for statement in statements(SCHEMA):
            db.execute(statement)
        if migrate:
            for statement in statements(FROM_VERSION_1_COPY):
                db.execute(statement)
            log.info("outbox %s: moved to schema version %d (deliveries per endpoint)", path, SCHEMA_VERSION)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _check_version(db: sqlite3.Connection, path: Path) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"{path}: outbox schema {version} is newer than this salara's")
    return version


def is_damaged(exc: BaseException) -> bool:
    """True when ``exc`` is SQLite saying the file is not a database, or is corrupt (NOTADB, CORRUPT).

    A file that cannot be opened for another reason (permissions, a full
    disk, a newer schema, a lock) is not damaged.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and isinstance(code, int) and code & 0xFF in DAMAGED_CODES


def set_aside(path: Path) -> Path:
    """Move the database file at ``path`` and its ``-wal``/``-shm`` files aside; return the new path.

    The new name is ``<name>.corrupt-<UTC time, YYYYMMDDTHHMMSSZ>`` in the
    same directory (``outbox.db.corrupt-20261201T101500Z``, with its
    ``-wal`` and ``-shm`` beside it), with ``-2``, ``-3``... added if that
    name is taken; nothing is overwritten or deleted. The side files go
    first, so that a stale WAL is never applied to the fresh file made at
    ``path`` afterwards. Call it while the damaged database is still open
    (SQLite deletes the side files when it closes one). Raises OSError when
    a file cannot be moved (those moved stay moved).
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time()))
    base = f"{path}.corrupt-{stamp}"
    aside, n = base, 1
    while any(os.path.lexists(aside + suffix) for suffix in ("", *SIDE_FILES)):
        n += 1
        aside = f"{base}-{n}"
    for suffix in (*SIDE_FILES, ""):
        if os.path.lexists(f"{path}{suffix}"):
            os.rename(f"{path}{suffix}", aside + suffix)
    return Path(aside)
