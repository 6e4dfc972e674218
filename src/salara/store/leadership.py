"""Which salara node leads: a PostgreSQL session-level advisory lock on a connection of its own.

Nodes sharing a PostgreSQL store (``[outbox] url``) all connect to AMI and
answer the API, but one only, the *leader*, ingests AMI events into the
store and delivers them (:mod:`salara.nodes`). It leads while it holds the
advisory lock :data:`LOCK_KEY` (``pg_try_advisory_lock``, session level) on
the connection :class:`Leadership` keeps open for nothing else.

- A node that does not lead tries the lock again every ``retry_s`` seconds
  (1 s), so it takes over about a second after the leader's session ended.
- A leader checks its connection every ``retry_s`` seconds (``SELECT 1``
  within ``check_timeout_s``); when the check fails or the connection
  breaks it steps down at once (:attr:`Leadership.leading` false, the
  listeners told) and connects again. A leader's session that dies (the
  process killed, the host gone) releases the lock on the server; the
  server's TCP keepalives and ``tcp_user_timeout`` are set short on this
  connection so a vanished host's session ends within about
  :data:`SERVER_DEAD_S` seconds.
- No two leaders at once: the lock is the server's. A deposed leader that
  has not noticed yet cannot store events either: the store refuses an add
  unless the backend :attr:`Leadership.pid` still holds the lock (the fence
  of :class:`~salara.store.postgres.PostgresStore`, :data:`FENCE`).

Times are seconds (monotonic for the checks). Nothing here raises but
CancelledError: a failed connection is logged (a WARNING, once until it works
again) and tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import psycopg

from salara.store.pginspection import safe_name

log = logging.getLogger(__name__)

LOCK_KEY: Final = 0x73616C617261
"""The advisory lock's key (``salara`` in ASCII): one leader per database."""
FENCE: Final = (
    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s"
    f" AND classid = {LOCK_KEY >> 32} AND objid = {LOCK_KEY & 0xFFFFFFFF} AND objsubid = 1"
)
"""One row when the backend ``%s`` holds :data:`LOCK_KEY` (a bigint key: high, low 32 bits, ``objsubid`` 1)."""
RETRY_S: Final = 1.0
CHECK_TIMEOUT_S: Final = 2.0
SERVER_DEAD_S: Final = 10
"""The server ends this connection's session when the client is silent this long (keepalives, user timeout)."""
_SERVER_SETTINGS: Final = (
    ("tcp_keepalives_idle", "3"),
    ("tcp_keepalives_interval", "2"),
    ("tcp_keepalives_count", "3"),
    ("tcp_user_timeout", str(SERVER_DEAD_S * 1000)),
)


class Leadership:
    """This node's claim to lead the nodes of the database at ``url``; run it with :meth:`run`.

    :attr:`leading` says whether it holds the lock now; each listener added
    with :meth:`add_listener` is called with the new value on every change,
    synchronously, the moment it is known (a step-down before anything else
    runs). ``node`` names this node in log lines. ``retry_s`` (seconds,
    > 0) is how often a follower tries the lock and a leader checks it;
    ``check_timeout_s`` (> 0) how long a check may take. Raises ValueError
    when either is not positive.
    """

    def __init__(
        self,
        url: str,
        *,
        node: str = "",
        retry_s: float = RETRY_S,
        check_timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        if retry_s <= 0 or check_timeout_s <= 0:
            raise ValueError("retry_s and check_timeout_s must be positive")
        self.url = url
        self.node = node
        self.retry_s = retry_s
        self.check_timeout_s = check_timeout_s
        self.leading = False
        self.pid: int | None = None
        """The backend process id of the lock's connection while it leads (the store's fence), else None."""
        self.terms = 0
        """How many times this node became the leader."""
        self._listeners: list[Callable[[bool], None]] = []
        self._failing = False

    def add_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(leading)`` on every change of :attr:`leading`."""
        self._listeners.append(listener)

    def _set(self, leading: bool, pid: int | None = None) -> None:
        if leading == self.leading:
            return
        self.leading, self.pid = leading, pid if leading else None
        if leading:
            self.terms += 1
            log.warning("node %s leads: it ingests AMI events and delivers them", self.node)
        else:
            log.warning("node %s no longer leads: it stops ingesting and delivering", self.node)
        for listener in self._listeners:
            listener(leading)

    async def run(self) -> None:
        """Hold the lock whenever it can, until cancelled (then the connection closes and the lock goes)."""
        try:
            while True:
                try:
                    await self._session()
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    self._set(False)
                    if not self._failing:
                        reason = str(exc).strip() or type(exc).__name__
                        log.warning("leadership on %s: %s; trying again", safe_name(self.url), reason)
                    self._failing = True
                await asyncio.sleep(self.retry_s)
        finally:
            self._set(False)

    async def _session(self) -> None:
        """One connection: try the lock until it is held, then check it until it fails (raises then)."""
        async with asyncio.timeout(self.check_timeout_s + 5):
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=3, keepalives_interval=2
            )
        try:
            async with asyncio.timeout(self.check_timeout_s):
                for name, value in _SERVER_SETTINGS:
                    await conn.execute("SELECT set_config(%s, %s, false)", (name, value))
                row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
            pid = int(row[0]) if row is not None else None
            if self._failing:
                log.info("leadership on %s: connected again", safe_name(self.url))
            self._failing = False
            while not self.leading:
                async with asyncio.timeout(self.check_timeout_s):
                    got = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))).fetchone()
                if got is not None and got[0]:
                    self._set(True, pid)
                    break
                await asyncio.sleep(self.retry_s)
            while True:
                await asyncio.sleep(self.retry_s)
                async with asyncio.timeout(self.check_timeout_s):
                    held = await (await conn.execute(FENCE, (pid,))).fetchone()
                if held is None:
                    raise psycopg.OperationalError("the leader lock is no longer held")
        finally:
            self._set(False)
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
