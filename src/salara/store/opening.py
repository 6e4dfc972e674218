"""Opening the store the config names: PostgreSQL when ``[outbox] url`` is set, else the SQLite file at ``path``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from salara.config.schema import Outbox as OutboxSection
from salara.store.interface import Store

__all__ = ["open_store", "safe_name", "wakeups"]


def safe_name(url: str) -> str:
    """The PostgreSQL store's ``url`` without its password, for messages (see :mod:`salara.store.pginspection`)."""
    from salara.store.pginspection import safe_name as name

    return name(url)


def open_store(section: OutboxSection, *, recover: bool = True, readonly: bool = False) -> Store:
    """The store of ``[outbox]``, open (see the drivers for ``recover`` and ``readonly``).

    The service opens it with the defaults; the command line with
    ``recover=False`` or ``readonly=True``. Raises
    :data:`~salara.store.interface.StoreError` when it cannot be opened.
    The PostgreSQL driver is imported only when it is used.
    """
    if section.url:
        from salara.store.postgres import PostgresStore

        return PostgresStore(
            section.url,
            max_rows=section.max_rows,
            node=section.node,
            lease_s=section.lease,
            recover=recover,
            readonly=readonly,
        )
    from salara.store.sqlite import Outbox

    return Outbox(section.path, max_rows=section.max_rows, recover=recover, readonly=readonly)


def wakeups(section: OutboxSection, wake: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
    """A background part calling ``wake()`` when another process re-queues events (PostgreSQL), else None.

    See :mod:`salara.store.pglisten`; the SQLite store has nothing like it
    (its workers find re-queued events at their next idle look).
    """
    if not section.url:
        return None
    from salara.store.pglisten import listen

    return functools.partial(listen, section.url, wake)
