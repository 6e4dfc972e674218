"""The recording files in Asterisk's monitor directory: finding one to serve, signing links, retention.

salara reads the files ``MixMonitor`` wrote from ``[recordings] monitor_dir``
(never through AMI) and deletes, after ``retention_days``, only the files it
asked for (named ``salara-rec-<call id>.<ext>``, :mod:`salara.calls.recording`).
The key signing recording links is salara's own: 32 random bytes in
``recordings.key`` beside the outbox (``[outbox] path``'s directory, mode
0600), made on first use; when it cannot be written, a key for this run only
(links then stop working at a restart), said once in the log.

Config values are read at each use from the config in use, so a reload
(SIGHUP) changes them live.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

from salara.calls.call import Call
from salara.calls.recording import FORMATS, NAME, content_type, file_name, recording_url, signature_problem
from salara.config import Config
from salara.config.recording import Recordings

log = logging.getLogger(__name__)

KEY_FILE = "recordings.key"
SWEEP_INTERVAL_S = 3600.0
"""How often retention looks for files to delete (at most; a short retention looks more often)."""


class RecordingFiles:
    """The files of ``config()``'s ``[recordings] monitor_dir`` and the links to them."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self.config = config
        self._key: bytes | None = None
        self._unwritable_told = False
        self.deleted = 0
        """Files retention deleted so far."""

    @property
    def section(self) -> Recordings:
        return self.config().recordings

    # -- the key -----------------------------------------------------------------

    def key(self) -> bytes:
        """The signing key: read from (or made in) the state directory once, then kept."""
        if self._key is None:
            self._key = self._load_key(Path(self.config().outbox.path).parent / KEY_FILE)
        return self._key

    @staticmethod
    def _load_key(path: Path) -> bytes:
        try:
            text = path.read_text(encoding="ascii").strip()
            if len(text) >= 64:
                return bytes.fromhex(text)
        except (OSError, ValueError):
            pass
        made = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(made + "\n")
        except FileExistsError:  # another salara made it meanwhile
            return RecordingFiles._load_key(path)
        except OSError as exc:
            log.warning(
                "recording links: cannot keep a key in %s (%s); links made now stop working at a restart",
                path,
                exc.strerror or exc,
            )
        return bytes.fromhex(made)

    # -- links -------------------------------------------------------------------

    def url(self, call: Call, ended_at: float) -> str | None:
        """The signed link ``call.ended`` carries for ``call`` (None: no public_url, not recorded, not answered)."""
        config = self.config()
        if not config.api.public_url or call.recording is None:
            return None
        return recording_url(config.api.public_url, self.key(), call, ended_at, config.recordings.url_ttl)

    def link_problem(self, call_id: str, expires: str | None, given: str | None, now: float) -> str | None:
        """Why a signed link to ``call_id``'s recording is refused at ``now`` (Unix s); None when it is good."""
        return signature_problem(self.key(), call_id, expires, given, now)

    # -- files -------------------------------------------------------------------

    def find(self, call_id: str) -> tuple[Path, str] | None:
        """The recording of ``call_id`` and its content type: the configured format first, then any other.

        Only a regular file (not a link) directly in ``monitor_dir`` counts.
        Raises :class:`~salara.calls.recording.RecordingError` for an id no
        file may be named after.
        """
        section = self.section
        formats = [section.format, *(fmt for fmt in FORMATS if fmt != section.format)]
        for fmt in formats:
            path = Path(section.monitor_dir) / file_name(call_id, fmt)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                return path, content_type(fmt)
        return None

    def sweep(self, now: float) -> int:
        """Delete the files salara asked for older than ``retention_days`` (by their mtime, Unix s); how many.

        A directory salara may not write to (or read) is said once in the log; nothing else is touched.
        """
        section = self.section
        if section.retention_days <= 0:
            return 0
        oldest = now - section.retention_days * 86400.0
        deleted = 0
        try:
            with os.scandir(section.monitor_dir) as entries:
                for entry in entries:
                    if not NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                        continue
                    if entry.stat(follow_symlinks=False).st_mtime >= oldest:
                        continue
                    os.unlink(entry.path)
                    deleted += 1
        except FileNotFoundError:
            pass  # no recording yet (Asterisk makes the directory)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # EROFS: systemd's ProtectSystem=strict
                self._tell_unwritable(section.monitor_dir, exc)
            else:
                log.warning("recording retention in %s: %s", section.monitor_dir, exc.strerror or exc)
        if deleted:
            log.info("recording retention: deleted %d files older than %g days", deleted, section.retention_days)
        self.deleted += deleted
        return deleted

    def _tell_unwritable(self, directory: str, exc: OSError) -> None:
        if not self._unwritable_told:
            self._unwritable_told = True
            log.error(
                "recording retention cannot delete in %s (%s): add the salara user to the asterisk group, make "
                "the directory group-writable and, under systemd, ReadWritePaths= it (README, Recordings)",
                directory,
                exc.strerror or exc,
            )

    async def run(self) -> None:
        """Retention, forever: :meth:`sweep` now and then every hour (or a tenth of the retention, if shorter)."""
        while True:
            await asyncio.to_thread(self.sweep, time.time())
            days = self.section.retention_days
            await asyncio.sleep(min(SWEEP_INTERVAL_S, days * 8640.0) if days > 0 else SWEEP_INTERVAL_S)
