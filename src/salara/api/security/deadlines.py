"""One timer for the request-header deadlines of all of a server's connections.

A client may take at most ``[api] request_timeout`` seconds to send a
request's headers (:func:`~salara.api.security.connections.http_protocol`).
A timer per connection costs a timer set and cancelled for every connection,
and nearly all of them never fire: an old CRM opens a connection per request
and sends it whole at once. :class:`HeaderDeadlines` keeps one timer for a
server instead, which looks at the connections it watches every
:attr:`~HeaderDeadlines.tick_s` seconds, and only while there are some: a late
client is told within its deadline plus one tick.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Watched(Protocol):
    """A connection whose request headers have a deadline."""

    def headers_overdue(self, now: float) -> bool:
        """Whether the headers it is reading were due before ``now`` (``loop.time()``, seconds)."""

    def headers_late(self) -> None:
        """Refuse the request whose headers are late (408) and close."""


class HeaderDeadlines:
    """The connections whose headers have a deadline, looked at together every ``tick_s`` seconds.

    ``tick_s`` is a tenth of ``timeout_s`` (between 0.05 and 1 s), so a late
    client waits at most a tenth longer than its deadline. A connection is
    :meth:`watch`\\ ed from its opening to its closing; it says itself, when
    asked, whether the headers it is reading are overdue.
    """

    def __init__(self, timeout_s: float) -> None:
        self.tick_s = min(1.0, max(0.05, timeout_s / 10))
        self._watched: set[Watched] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, connection: Watched, loop: asyncio.AbstractEventLoop) -> None:
        """Look at ``connection`` on each tick of ``loop`` (the server's) until :meth:`forget`."""
        self._watched.add(connection)
        if self._timer is None:
            self._timer = loop.call_later(self.tick_s, self._sweep, loop)

    def forget(self, connection: Watched) -> None:
        """Stop looking at ``connection`` (closed); the timer stops with the last one."""
        self._watched.discard(connection)

    def __len__(self) -> int:
        return len(self._watched)

    @property
    def running(self) -> bool:
        """Whether the timer is set (it is from the first watched connection to a tick after the last)."""
        return self._timer is not None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for late in [connection for connection in self._watched if connection.headers_overdue(now)]:
            try:
                late.headers_late()
            except Exception:  # one connection's failure must not end the deadlines of all the others
                log.exception("late request headers not refused; the connection is no longer watched")
                self._watched.discard(late)
        self._timer = loop.call_later(self.tick_s, self._sweep, loop) if self._watched else None
