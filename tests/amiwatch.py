"""Test-side views of AMI, independent of salara's own AMI code.

- :class:`EventWatch` logs in to the test Asterisk and records every event.
- :class:`AMIRecorder` is a TCP proxy between salara and Asterisk that records
  every action salara sends, so a test can assert what reached AMI.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from testpbx import pbx

Event = dict[str, str]


def _parse(block: bytes) -> Event:
    out: Event = {}
    for line in block.decode(errors="replace").split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep and key not in out:
            out[key] = value
    return out


class EventWatch:
    """Collect AMI events from a separate session of the test Asterisk."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._sock = socket.create_connection((pbx.AMI_HOST, pbx.AMI_PORT), timeout=5)
        self._sock.sendall(f"Action: Login\r\nUsername: {pbx.AMI_USER}\r\nSecret: {pbx.AMI_SECRET}\r\n\r\n".encode())
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = b""
        self._sock.settimeout(0.2)
        while not self._stop:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *blocks, buf = buf.split(b"\r\n\r\n")
            with self._lock:
                for block in blocks:
                    event = _parse(block)
                    if "Event" in event:
                        self.events.append(event)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def wait_for(self, predicate: Callable[[Event], bool], timeout_s: float = 10) -> Event:
        """The first recorded event matching ``predicate``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.snapshot():
                if predicate(event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no matching AMI event within {timeout_s} s")

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self._sock.close()


class AMIRecorder:
    """A loopback TCP proxy to Asterisk's AMI that records what clients send.

    ``port`` is where salara should connect. ``actions()`` lists the ``Action:``
    names received so far. ``cut()`` drops every proxied connection.
    """

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self.sent = bytearray()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._closed = False
        self.refusing = False
        """While true, new connections are closed at once: the client cannot get back in."""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection((pbx.AMI_HOST, pbx.AMI_PORT), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record:
                    with self._lock:
                        self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def actions(self) -> list[str]:
        with self._lock:
            text = bytes(self.sent).decode(errors="replace")
        return [line[len("Action: ") :] for line in text.split("\r\n") if line.startswith("Action: ")]

    def cut(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.cut()
