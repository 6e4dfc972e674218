"""Waking the delivery workers of every node through PostgreSQL's ``LISTEN``/``NOTIFY``.

The PostgreSQL store sends a notification on :data:`CHANNEL` when an operator
makes deliveries due again (``salara events retry``, a replay, an endpoint
enabled), from whichever node or command line did it. :func:`listen` keeps
a connection of its own listening (psycopg's async connection: it waits on
the event loop without blocking it) and calls ``wake`` at each one, so the
workers of this node look at the store at once instead of at their next idle
look (5 s). Only a wake-up: nothing is read from a notification, and a lost
one costs that delay only. Events the node adds wake its workers directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import psycopg

from salara.store.pginspection import safe_name

log = logging.getLogger(__name__)

CHANNEL: Final = "salara_outbox"
"""The notification channel (its payload is empty)."""
RETRY_S: Final = 5.0
"""Seconds between two attempts to listen again after the connection failed."""


async def listen(url: str, wake: Callable[[], None], *, retry_s: float = RETRY_S) -> None:
    """Call ``wake()`` at each notification on :data:`CHANNEL` of the database at ``url``, until cancelled.

    Also once each time listening starts (what was notified meanwhile is not
    lost). A failed connection is logged (a WARNING, once until it works
    again) and tried again every ``retry_s`` seconds; this never raises but
    CancelledError.
    """
    failing = False
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                if failing:
                    log.info("store %s: listening for wake-ups again", safe_name(url))
                failing = False
                wake()
                async for _ in conn.notifies():
                    wake()
        except psycopg.Error as exc:
            if not failing:
                log.warning("store %s: cannot listen for wake-ups (%s); retrying", safe_name(url), str(exc).strip())
            failing = True
        await asyncio.sleep(retry_s)
