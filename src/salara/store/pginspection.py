"""The reads of the PostgreSQL store for operators and metrics: counts, listings, the event log, attempts.

A base of :class:`~salara.store.postgres.PostgresStore` (which owns the
connection, :meth:`PgInspection._connection`); each method is one read, no
transaction of its own. Every :class:`psycopg.Error` is raised as
:class:`~salara.store.interface.StoreFailure`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import psycopg
from psycopg import conninfo

from salara.store import migrate, pgqueries
from salara.store import pgstatements as sql
from salara.store.interface import StoreFailure
from salara.store.records import OPEN_STATUSES, Attempt, Counts, EventInfo, LoggedEvent, Status


def safe_name(url: str) -> str:
    """``url`` without its password and options, for log messages: ``postgresql://user@host:port/dbname``."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class PgInspection:
    """Reads of the store's rows (see :class:`~salara.store.interface.Store` for their meaning)."""

    @property
    def name(self) -> str:
        """The database, for log messages (no password)."""
        raise NotImplementedError

    def _connection(self) -> pgqueries.Connection:
        """The open connection (the store's). Raises :class:`psycopg.Error`."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Raise a database error (or a schema found not this salara's) as StoreFailure."""
        try:
            yield
        except migrate.SchemaMismatch as exc:
            raise StoreFailure(f"{self.name}: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreFailure(f"{self.name}: {str(exc).strip()}") from exc

    def disabled(self) -> dict[str, tuple[float, str]]:
        """The disabled endpoints: ``{name: (since, Unix s; reason)}``."""
        with self._guard():
            rows = self._connection().execute(sql.DISABLED).fetchall()
        return {name: (at, reason or "") for name, at, reason in rows}

    # -- operators and metrics -------------------------------------------------

    def counts(self, endpoint: str | None = None) -> Counts:
        """Deliveries by state, to ``endpoint`` or all (scans: for metrics and the command line)."""
        with self._guard():
            return pgqueries.counts(self._connection(), endpoint)

    def depth(self) -> int:
        """Deliveries not done yet (pending, retrying, in flight), to every endpoint."""
        with self._guard():
            row = self._connection().execute(sql.DEPTH).fetchone()
        return int(row[0]) if row is not None else 0

    def list_events(
        self,
        statuses: Iterable[Status] = (*OPEN_STATUSES, "dead"),
        *,
        limit: int = 100,
        endpoint: str | None = None,
        call_key: str | None = None,
        type_: str | None = None,
        since: float | None = None,
        after: int = 0,
    ) -> list[EventInfo]:
        """Up to ``limit`` deliveries in ``statuses``, oldest first; filters as :meth:`Store.list_events`."""
        wanted = list(statuses)
        if not wanted:
            return []
        with self._guard():
            return pgqueries.list_events(
                self._connection(),
                wanted,
                limit,
                endpoint=endpoint,
                call_key=call_key,
                type_=type_,
                since=since,
                after=after,
            )

    def event_log(self, after: int = 0, limit: int = 100) -> list[LoggedEvent]:
        """Up to ``limit`` stored events with a sequence number over ``after``, oldest first."""
        with self._guard():
            return pgqueries.event_log(self._connection(), after, limit)

    def attempts(self, event_id: str, endpoint: str | None = None) -> list[Attempt]:
        """The attempt log of one event (to ``endpoint``, or all), oldest first."""
        with self._guard():
            return pgqueries.attempts(self._connection(), event_id, endpoint)
