"""Undelivered events a full store dropped: counted, and logged at most every ten seconds (both drivers)."""

from __future__ import annotations

import logging
import time
from typing import Final

log = logging.getLogger("salara.store")

DROP_LOG_INTERVAL_S: Final = 10.0
"""A full store logs its drops at most this often (each message gives the count)."""


class Drops:
    """The drops of the store named ``name`` (bound ``max_rows``): :attr:`total` since opening, logged in batches."""

    def __init__(self, name: str, max_rows: int) -> None:
        self.name = name
        self.max_rows = max_rows
        self.total = 0
        self._unlogged = 0
        self._logged_at = float("-inf")

    def add(self, count: int) -> None:
        """Count ``count`` dropped events; log them unless a drop was logged in the last interval."""
        self.total += count
        self._unlogged += count
        self.log()

    def log(self, *, force: bool = False) -> None:
        """Log the drops not logged yet, if any: now with ``force`` (the store closes), else once per interval."""
        now = time.monotonic()
        if self._unlogged and (force or now - self._logged_at >= DROP_LOG_INTERVAL_S):
            log.warning(
                "outbox %s is full (max_rows=%d): dropped the %d oldest undelivered events (%d in all)",
                self.name,
                self.max_rows,
                self._unlogged,
                self.total,
            )
            self._unlogged = 0
            self._logged_at = now
