"""How long stored events are kept: the retention part of the service.

Every ``interval_s`` it deletes the events delivered to every endpoint
more than ``keep_s`` seconds ago, or stored that long ago when no endpoint
got them (``[outbox] keep_days``; the event log pages through what is left;
a dead delivery keeps its event, to be replayed), and attempt-log rows older than ``keep_attempts_s``. The store's
``max_rows`` bounds it all in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from salara.store.interface import Store, StoreError

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S: Final = 5.0
ATTEMPTS_KEPT_S: Final = 7 * 86400.0


class Retention:
    """Prunes ``store`` (module doc). Run :meth:`run` as a task; cancel it to stop."""

    def __init__(
        self,
        store: Store,
        *,
        keep_s: float,
        keep_attempts_s: float = ATTEMPTS_KEPT_S,
        interval_s: float = PRUNE_INTERVAL_S,
    ) -> None:
        self.store = store
        self.keep_s = keep_s
        self.keep_attempts_s = max(keep_attempts_s, keep_s)
        self.interval_s = interval_s
        self.pruned = 0
        """Events deleted so far."""

    def prune(self, now: float | None = None) -> int:
        """One pass (Unix seconds ``now``); returns how many events went. Raises :data:`StoreError`."""
        at = time.time() if now is None else now
        pruned = self.store.prune(at - self.keep_s, at - self.keep_attempts_s)
        self.pruned += pruned
        return pruned

    async def run(self) -> None:
        """Prune every ``interval_s`` until cancelled; a store error is logged and tried again later."""
        while True:
            try:
                self.prune()
            except StoreError:
                log.exception("outbox %s: cannot delete old events", self.store.name)
            await asyncio.sleep(self.interval_s)
