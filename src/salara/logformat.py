"""How a log record becomes a line: plain text, text for the journal, or one JSON object.

The formatters take records and give strings (no clock but the record's own
``created``); :func:`setup_logging` installs the one of ``[general]
log_format`` on a stderr handler, at ``[event] verbose``'s level.

- ``text``: ``2026-12-01 23:21:20,144 INFO salara.app: message``, as before.
- ``text`` under systemd (stderr is the journal's stream, ``JOURNAL_STREAM``
  in systemd.exec(5)): every line starts with its syslog priority ``<N>``
  (sd-daemon(3), read by journald as ``SyslogLevelPrefix=`` does, the
  default), and without a time: the journal stamps each entry itself.
- ``json``: one JSON object per line, nothing before it: ``time`` (ISO 8601
  UTC, milliseconds), ``level``, ``logger``, ``message``, ``call_id`` when
  there is one, ``exception`` when one was logged. Non-ASCII is escaped,
  so no character of a message can end the line.

The call id of a record is its ``call_id`` attribute (``log.info(...,
extra={"call_id": id})``), else what :data:`CALL_ID` gives in the context
the record was logged in (the wiring sets it around a FastAGI session).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Final, Literal

from salara.utc import utc_timestamp

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")

CALL_ID: ContextVar[Callable[[], str | None] | None] = ContextVar("salara_call_id", default=None)
"""In a context that works on one call: a function giving its call id (the Linkedid), or None while unknown.

A function rather than the id, so a record logged before AMI has reported
the call's channel has no id, and one logged after has the right one."""

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT: Final = "%(levelname)s %(name)s: %(message)s"

LOG_LEVELS: Final = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}
"""``[event] verbose`` 0 off, 1 on, 2 debug, 3 dump -> logging level (the old module's meaning)."""

SYSLOG_PRIORITIES: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
"""Python level -> syslog priority (syslog(3): 2 crit, 3 err, 4 warning, 6 info, 7 debug)."""


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a Python level; one between two named levels counts as the lower one.

    >>> [syslog_priority(n) for n in (50, 40, 30, 25, 20, 10, 5)]
    [2, 3, 4, 6, 6, 7, 7]
    """
    for level, priority in sorted(SYSLOG_PRIORITIES.items(), reverse=True):
        if levelno >= level:
            return priority
    return 7


def call_id_of(record: logging.LogRecord) -> str | None:
    """The call id of ``record``: its ``call_id`` attribute, else :data:`CALL_ID`'s answer now; None if neither."""
    given = getattr(record, "call_id", None)
    if given:
        return str(given)
    lookup = CALL_ID.get()
    return lookup() if lookup is not None else None


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines; ``[call <id>]`` before the message when the record has a call id."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        call_id = call_id_of(record)
        if call_id is None:
            return super().formatMessage(record)
        shown = logging.makeLogRecord(record.__dict__)
        shown.message = f"[call {call_id}] {record.message}"
        return super().formatMessage(shown)


class JournalFormatter(TextFormatter):
    """Text for the journal: ``<N>`` (the record's syslog priority) before every line, no time.

    A multi-line record (a traceback) has the prefix on each line, since
    journald files every line of a stream as an entry of its own.
    """

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module doc for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_id = call_id_of(record)
        if call_id is not None:
            entry["call_id"] = call_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


def formatter_for(log_format: LogFormat, *, journal: bool) -> logging.Formatter:
    """The formatter of ``[general] log_format``; ``journal``: stderr is the journal's stream (text only)."""
    if log_format == "json":
        return JsonFormatter()
    return JournalFormatter() if journal else TextFormatter()


def journal_stream_matches(value: str | None, device: int, inode: int) -> bool:
    """Whether ``JOURNAL_STREAM`` (``"DEVICE:INODE"``, systemd.exec(5)) names the stream ``device``/``inode``.

    systemd sets it for a service whose stdout or stderr goes to the journal;
    a process should check that its stderr is still that stream (it may have
    been redirected since) before it speaks the journal's way.

    >>> journal_stream_matches("8:42", 8, 42), journal_stream_matches("8:42", 8, 43)
    (True, False)
    """
    if not value:
        return False
    dev, sep, ino = value.partition(":")
    return bool(sep) and dev.strip() == str(device) and ino.strip() == str(inode)


class _SalaraHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler :func:`setup_logging` installs (told apart from handlers others added)."""


def stderr_is_journal() -> bool:
    """Whether stderr is the journal's stream: ``$JOURNAL_STREAM`` names its device and inode (systemd.exec(5))."""
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return journal_stream_matches(os.environ.get("JOURNAL_STREAM"), info.st_dev, info.st_ino)


def setup_logging(verbose: int, log_format: LogFormat = "text") -> None:
    """Log to stderr at ``verbose``'s level (:data:`LOG_LEVELS`) in ``log_format`` (:func:`formatter_for`).

    Called again (a reload), it changes the level and the format of the
    handler it installed; handlers others added to the root logger stay.
    """
    root = logging.getLogger()
    root.setLevel(LOG_LEVELS.get(verbose, logging.INFO))
    formatter = formatter_for(log_format, journal=stderr_is_journal())
    ours = [handler for handler in root.handlers if isinstance(handler, _SalaraHandler)]
    if not ours:
        ours = [_SalaraHandler(sys.stderr)]
        root.addHandler(ours[0])
    for handler in ours:
        handler.setFormatter(formatter)
