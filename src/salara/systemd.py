"""Telling systemd how the service is: the ``sd_notify`` datagram protocol, and the watchdog.

sd_notify(3): a service of ``Type=notify`` sends newline-separated
``KEY=VALUE`` assignments in one datagram to the ``AF_UNIX`` socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name when it starts with ``@``).
salara sends ``READY=1`` once its HTTP API and FastAGI server listen (not
waiting for AMI: it serves, and answers 503, while Asterisk is down),
``STATUS=...`` with AMI's state on each change, ``RELOADING=1`` ... ``READY=1``
around a reload (SIGHUP), ``STOPPING=1`` when it stops, and ``WATCHDOG=1``
every half of ``$WATCHDOG_USEC`` (systemd.service(5) ``WatchdogSec=``) while
the event loop runs.

Without ``$NOTIFY_SOCKET`` (not under systemd) every call does nothing. A
send that fails is logged once and dropped: telling systemd must never stop
the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

MAX_DATAGRAM = 4096
"""Longest message sent; a longer ``STATUS=`` is cut (systemd reads datagrams of up to a page)."""


def notify_address(value: str | None) -> str | bytes | None:
    """The socket address of ``$NOTIFY_SOCKET``: a path, or for ``@name`` the abstract name ``b"\\0name"``.

    None when unset, empty, or neither an absolute path nor ``@`` (sd_notify(3)
    ignores those too).

    >>> notify_address("/run/systemd/notify"), notify_address("@salara/notify"), notify_address("x"), notify_address("")
    ('/run/systemd/notify', b'\\x00salara/notify', None, None)
    """
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value if value.startswith("/") else None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC`` (microseconds); None: no watchdog.

    Follows sd_watchdog_enabled(3): ``$WATCHDOG_PID``, when set, must be
    ``pid`` (the watchdog is for that process only).

    >>> watchdog_interval({"WATCHDOG_USEC": "20000000"}, 7), watchdog_interval({"WATCHDOG_USEC": "0"}, 7)
    (10.0, None)
    >>> watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "8"}, 7)
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    watched = environ.get("WATCHDOG_PID", "").strip()
    if usec <= 0 or (watched and watched != str(pid)):
        return None
    return usec / 2_000_000


def message(**fields: str | int) -> bytes:
    """One sd_notify datagram: ``KEY=VALUE`` lines (keys upper case); line breaks in values become blanks.

    >>> message(ready=1, status="AMI up\\nnow")
    b'READY=1\\nSTATUS=AMI up now'
    """
    lines = [f"{key.upper()}={' '.join(str(value).splitlines())}" for key, value in fields.items()]
    return "\n".join(lines).encode("utf-8", "replace")[:MAX_DATAGRAM]


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` of ``environ`` (default: the process's environment).

    One unconnected ``SOCK_DGRAM`` socket, opened at the first send and
    kept; :meth:`close` closes it.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = notify_address(env.get("NOTIFY_SOCKET"))
        self.watchdog_s = watchdog_interval(env, os.getpid())
        """Seconds between watchdog pings, or None (see :func:`watchdog_interval`)."""
        self._socket: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to tell (salara runs under systemd with ``Type=notify``)."""
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one message (:func:`message`); True when it was sent. Never raises."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto(message(**fields), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot tell systemd (NOTIFY_SOCKET): %s", exc.strerror or exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (with ``STATUS=``): startup, or a reload, is finished."""
        return self.send(ready=1, status=status) if status is not None else self.send(ready=1)

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line for ``systemctl status``."""
        return self.send(status=text)

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (``CLOCK_MONOTONIC``, microseconds): a reload started.

        End it with :meth:`ready`. The timestamp is what systemd 253's
        ``Type=notify-reload`` asks for; older ones ignore it."""
        return self.send(reloading=1, monotonic_usec=time.monotonic_ns() // 1000)

    def stopping(self) -> bool:
        """``STOPPING=1``: the service is shutting down."""
        return self.send(stopping=1)

    async def watchdog(self) -> None:
        """Send ``WATCHDOG=1`` every :attr:`watchdog_s` seconds until cancelled; returns at once without a watchdog.

        A ping means the event loop still runs this task: a loop blocked for
        ``WatchdogSec`` gets the service killed and restarted by systemd.
        """
        if self.watchdog_s is None or self.address is None:
            return
        while True:
            self.send(watchdog=1)
            await asyncio.sleep(self.watchdog_s)

    def close(self) -> None:
        """Close the socket (a later send opens it again)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
