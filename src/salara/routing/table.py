"""The ``[route]`` table (SPEC §3 step 2), re-read when the config file or a file it includes changes."""

from __future__ import annotations

import logging
from pathlib import Path

from salara import config
from salara.errors import ConfigError

log = logging.getLogger(__name__)


class RouteTable:
    """The ``[route]`` table, re-read when the config changes (``salara route set``, an edit by hand).

    The config's files are watched: the main file, every file it includes
    and the directories its ``#include`` lines look in (a new file matching a
    glob), as they were at the last read. An entry that is no destination
    (:func:`salara.config.check_destinations`) is logged and left out, as
    when the service started.
    """

    def __init__(self, path: Path | None, routes: dict[str, str]) -> None:
        self.path = path
        self._routes = dict(routes)
        self._watched: list[Path] = []
        if path is not None:
            try:
                self._watched = config.read_file(path).watched
            except ConfigError:
                self._watched = [path]
        self._stamp = config.stamp(self._watched)

    def current(self) -> dict[str, str]:
        """The table now: re-read first when a watched file or directory changed (kept as it was on an error)."""
        if self.path is None:
            return self._routes
        stamp = config.stamp(self._watched)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                raw = config.read_file(self.path)
            except ConfigError as exc:
                log.error("route table not reloaded (keeping the old one): %s", exc)
                return self._routes
            config.check_destinations(raw, config.Report())
            self._routes = raw.routes
            self._watched = raw.watched
            self._stamp = config.stamp(self._watched)
            log.info("route table reloaded from %s: %d entries", self.path, len(self._routes))
        return self._routes
