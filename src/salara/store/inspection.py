"""The reads of the SQLite outbox for operators and metrics: counts, listings, the event log, attempts.

A base of :class:`~salara.store.sqlite.Outbox` (which owns the connection
``_db``); each method is one read, no transaction of its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from salara.store import queries
from salara.store import statements as sql
from salara.store.records import OPEN_STATUSES, Attempt, Counts, EventInfo, LoggedEvent, Status


class Inspection:
    """Reads of the store's rows (see :class:`~salara.store.interface.Store` for their meaning)."""

    _db: sqlite3.Connection

    def disabled(self) -> dict[str, tuple[float, str]]:
        """The disabled endpoints: ``{name: (since, Unix s; reason)}``."""
        return {name: (at, reason or "") for name, at, reason in self._db.execute(sql.DISABLED).fetchall()}

    def counts(self, endpoint: str | None = None) -> Counts:
        """Deliveries by state, to ``endpoint`` or all (scans: for metrics and the command line)."""
        return queries.counts(self._db, endpoint)

    def depth(self) -> int:
        """Deliveries not done yet (pending, retrying, in flight), to every endpoint."""
        return int(self._db.execute(sql.DEPTH).fetchone()[0])

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
        """Up to ``limit`` deliveries in ``statuses``, oldest first; filters as :func:`queries.list_events`."""
        wanted = list(statuses)
        if not wanted:
            return []
        return queries.list_events(
            self._db, wanted, limit, endpoint=endpoint, call_key=call_key, type_=type_, since=since, after=after
        )

    def event_log(self, after: int = 0, limit: int = 100) -> list[LoggedEvent]:
        """Up to ``limit`` stored events with a sequence number over ``after``, oldest first."""
        return queries.event_log(self._db, after, limit)

    def attempts(self, event_id: str, endpoint: str | None = None) -> list[Attempt]:
        """The attempt log of one event (to ``endpoint``, or all), oldest first."""
        return queries.attempts(self._db, event_id, endpoint)
