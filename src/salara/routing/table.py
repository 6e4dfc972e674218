"""The ``[route]`` table (SPEC §3 step 2), re-read when the config file changes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from salara.config import parse_text
from salara.errors import ConfigError

log = logging.getLogger(__name__)


class RouteTable:
    """The ``[route]`` table, re-read when the config file changes (``salara route set``)."""

    def __init__(self, path: Path | None, routes: dict[str, str]) -> None:
        self.path = path
        self._routes = dict(routes)
        self._stamp = self._mtime()

    def _mtime(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns if self.path else None
        except OSError:
            return None

    def current(self) -> dict[str, str]:
        stamp = self._mtime()
        if stamp != self._stamp and self.path is not None:
            self._stamp = stamp
            try:
                self._routes = parse_text(self.path.read_text(encoding="utf-8")).routes
                log.info("route table reloaded from %s: %d entries", self.path, len(self._routes))
            except (OSError, ConfigError) as exc:
                log.error("route table not reloaded (keeping the old one): %s", exc)
        return self._routes
