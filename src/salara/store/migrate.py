"""The PostgreSQL store's schema: plain SQL migrations, versioned in the package, run by ``salara db migrate``.

The migrations are the files ``migrations/NNNN_name.sql`` beside this
module, applied in the order of their number ``NNNN`` (1, 2, ...), each in
one transaction, and never changed once released: a change of the schema is
a new file. The table ``salara_schema`` of the database holds a row per
migration applied (``version``, ``name``, ``applied_at`` in Unix seconds).

:func:`migrate` applies the missing ones under a transaction-scoped advisory
lock (:data:`MIGRATION_LOCK`), so that two nodes migrating at once apply each
file once. :func:`check` is what a store does when it opens the database: it
refuses one not migrated to this salara's version, or migrated past it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

import psycopg

from salara.store.interface import StoreFailure

MIGRATION_LOCK: Final = 0x5A1A_4A00
"""The advisory lock key (a 64-bit integer) held while migrating."""
FILE_NAME: Final = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

CREATE_VERSIONS: Final = """
CREATE TABLE IF NOT EXISTS salara_schema (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at double precision NOT NULL
)
"""


class SchemaMismatch(StoreFailure):
    """The database's schema is not this salara's: not migrated yet (``behind``) or newer."""

    def __init__(self, message: str, *, behind: bool) -> None:
        super().__init__(message)
        self.behind = behind


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its number, its name (the file's, without number and ``.sql``), its SQL."""

    version: int
    name: str
    sql: str = field(repr=False)


def migrations() -> list[Migration]:
    """The migrations shipped with this salara, by version (1, 2, ... without gaps). Raises RuntimeError on a gap."""
    found = []
    for entry in resources.files("salara.store").joinpath("migrations").iterdir():
        match = FILE_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"the store's migrations are not numbered 1..n: {[m.version for m in found]}")
    return found


def latest() -> int:
    """The schema version this salara needs: the number of its last migration."""
    return migrations()[-1].version


def applied(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The last migration applied to the database (0: none, or no ``salara_schema`` table)."""
    row = conn.execute("SELECT to_regclass('salara_schema') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    version = conn.execute("SELECT coalesce(max(version), 0) FROM salara_schema").fetchone()
    return int(version[0]) if version is not None else 0  # type: ignore[call-overload]


def migrate(conn: psycopg.Connection[tuple[object, ...]], *, now: float | None = None) -> list[Migration]:
    """Apply the migrations the database lacks, each in one transaction; return those applied (oldest first).

    ``conn`` must be in autocommit mode (each migration is its own
    transaction). Concurrent calls on one database apply each once. Raises
    :class:`SchemaMismatch` when the database is newer than this salara,
    :class:`psycopg.Error` when a migration fails (that one changes nothing;
    the earlier ones stay applied).
    """
    done: list[Migration] = []
    wanted = migrations()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(CREATE_VERSIONS)
    for migration in wanted:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            current = applied(conn)
            if current > wanted[-1].version:
                raise SchemaMismatch(
                    f"the database's store schema {current} is newer than this salara's ({wanted[-1].version})",
                    behind=False,
                )
            if migration.version <= current:
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO salara_schema (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, time.time() if now is None else now),
            )
        done.append(migration)
    return done


def check(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Raise :class:`SchemaMismatch` unless the database is migrated to exactly :func:`latest`."""
    current, wanted = applied(conn), latest()
    if current < wanted:
        raise SchemaMismatch(
            f"the database's store schema is version {current}, this salara needs {wanted}: run salara db migrate",
            behind=True,
        )
    if current > wanted:
        raise SchemaMismatch(
            f"the database's store schema {current} is newer than this salara's ({wanted})", behind=False
        )


def migrate_url(url: str, *, connect_timeout_s: float = 10.0) -> tuple[list[Migration], int]:
    """Connect to the database at ``url`` and :func:`migrate` it; return the migrations applied and the version now.

    Raises :class:`~salara.store.interface.StoreFailure` (its cause the
    driver's error) when the database cannot be reached or a migration
    fails, :class:`SchemaMismatch` when it is newer than this salara.
    """
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=max(1, round(connect_timeout_s))) as conn:
            done = migrate(conn)
            return done, applied(conn)
    except psycopg.Error as exc:
        raise StoreFailure(str(exc).strip()) from exc
