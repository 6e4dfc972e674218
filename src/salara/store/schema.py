"""The SQL of the SQLite store: its tables, its schema version, the statements that change rows.

:func:`connect` opens a file and makes its tables.
``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`; a file of a newer
version is refused. The version counts changes older code cannot live with
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

SCHEMA_VERSION: Final = 1

DAMAGED_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
"""SQLite's primary result codes for a file that is not a database or whose content is corrupt."""
SIDE_FILES: Final = ("-wal", "-shm")
"""What SQLite keeps beside the database file in WAL mode (the name plus these suffixes)."""

SCHEMA: Final = """
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

# -- events --------------------------------------------------------------------

# A new event is ready unless an earlier one of its call is still open.
INSERT: Final = """
INSERT INTO events (id, call_key, body, status, created_at, next_attempt_at)
VALUES (?1, ?2, ?3,
        CASE WHEN EXISTS (SELECT 1 FROM events
                          WHERE call_key = ?2 AND status IN ('blocked', 'ready', 'sending'))
             THEN 'blocked' ELSE 'ready' END,
        ?4, ?4)
"""
# Make the oldest blocked event of a call ready, unless the call has one open.
PROMOTE: Final = """
UPDATE events SET status = 'ready'
WHERE seq = (SELECT seq FROM events WHERE call_key = ?1 AND status = 'blocked' ORDER BY seq LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM events WHERE call_key = ?1 AND status IN ('ready', 'sending'))
"""
CLAIM: Final = """
SELECT seq, id, call_key, body, attempts FROM events
WHERE status = 'ready' AND next_attempt_at <= ?
ORDER BY next_attempt_at, seq LIMIT ?
"""
DELIVERED: Final = """
UPDATE events SET status = 'delivered', attempts = attempts + 1, done_at = ?2,
                  last_status = ?3, last_error = NULL
WHERE seq = ?1 AND status = 'sending'
"""
GONE: Final = """
UPDATE events SET status = 'gone', attempts = attempts + 1, done_at = ?2,
                  last_status = ?3, last_error = ?4
WHERE seq = ?1 AND status = 'sending'
"""
RETRY: Final = """
UPDATE events SET status = 'ready', attempts = attempts + 1, next_attempt_at = ?5,
                  last_status = ?3, last_error = ?4
WHERE seq = ?1 AND status = 'sending'
"""
LOG_ATTEMPT: Final = "INSERT INTO attempts (event_id, at, outcome, http_status, error) VALUES (?, ?, ?, ?, ?)"
REQUEUE_GONE: Final = """
UPDATE events SET attempts = 0, done_at = NULL, next_attempt_at = ?2,
       status = CASE WHEN EXISTS (SELECT 1 FROM events AS open
                                  WHERE open.call_key = events.call_key
                                    AND open.status IN ('blocked', 'ready', 'sending'))
                     THEN 'blocked' ELSE 'ready' END
WHERE seq = ?1 AND status = 'gone'
"""

# -- call tracking ---------------------------------------------------------------

END_CALL: Final = "DELETE FROM tracked_calls WHERE linkedid = ?"
END_CALL_STATE: Final = "DELETE FROM tracked_call_state WHERE linkedid = ?"
REMOVE_CHANNEL: Final = "DELETE FROM live_channels WHERE uniqueid = ?"
PUT_CALL: Final = "INSERT OR REPLACE INTO tracked_calls VALUES (?, ?, ?, ?, ?)"
PUT_CALL_STATE: Final = "INSERT OR REPLACE INTO tracked_call_state VALUES (?, ?, ?)"
PUT_CHANNEL: Final = "INSERT OR REPLACE INTO live_channels VALUES (?, ?, ?, ?, ?, ?)"
LOAD_CALLS: Final = (
    "SELECT linkedid, caller, exten, source, started_at, client_state, answered_at"
    " FROM tracked_calls LEFT JOIN tracked_call_state USING (linkedid) ORDER BY started_at"
)
LOAD_CHANNELS: Final = "SELECT uniqueid, linkedid, name, state, caller, exten FROM live_channels"

# -- idempotency keys ------------------------------------------------------------

PUT_KEY: Final = "INSERT OR REPLACE INTO idempotency_keys VALUES (?, ?, ?, ?, ?)"
COUNT_KEYS: Final = "SELECT count(*) FROM idempotency_keys"
# The oldest first; ties (same created_at) in key order, so the cut is well defined.
TRIM_KEYS: Final = """
DELETE FROM idempotency_keys WHERE (scope, key) IN
    (SELECT scope, key FROM idempotency_keys ORDER BY created_at, scope, key LIMIT ?)
"""
EXPIRE_KEYS: Final = "DELETE FROM idempotency_keys WHERE scope = ? AND created_at < ?"
GET_KEY: Final = "SELECT fingerprint, result FROM idempotency_keys WHERE scope = ? AND key = ?"


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
    _check_version(db, path)
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements(SCHEMA):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _check_version(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"{path}: outbox schema {version} is newer than this salara's")


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
