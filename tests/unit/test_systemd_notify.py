"""sd_notify: the messages on a socket of the test's own, from the Notifier and from a running ``salara serve``.

The service says ``READY=1`` while AMI is still down (it serves, answering
503), ``STATUS=`` each time AMI comes up or goes down (a tiny AMI peer here
takes the login and then hangs up), ``WATCHDOG=1`` at half of
``$WATCHDOG_USEC``, ``RELOADING=1`` then ``READY=1`` around a SIGHUP, and
``STOPPING=1`` on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from salara.systemd import Notifier, message, notify_address, watchdog_interval
from tests.conftest import free_port

WAIT_S = 30.0
"""Bound of every wait for a message (a loop that always ends; nothing is timed)."""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(WAIT_S)
    yield str(path), sock
    sock.close()


def test_a_message_is_key_value_lines_in_one_datagram(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("serving; AMI connected\nto 127.0.0.1:5038")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving; AMI connected to 127.0.0.1:5038"
    assert notifier.status("AMI down")
    assert sock.recv(4096) == b"STATUS=AMI down"
    notifier.close()


def test_an_abstract_socket_name_starts_with_at() -> None:
    name = f"salara-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(WAIT_S)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        notifier.close()
    finally:
        sock.close()


def test_without_a_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier({}).ready()
    assert notify_address("relative/path") is None
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled and not gone.ready()  # logged once, never raised


def test_the_watchdog_interval_is_half_of_watchdog_usec_for_this_process() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_interval({}, 42) is None
    assert message(status="x" * 5000).startswith(b"STATUS=x") and len(message(status="x" * 5000)) == 4096


class TinyAMI:
    """Takes one AMI session on ``port``: banner, any plain login (then ``FullyBooted``), Ping, CoreShowChannels.

    :meth:`hang_up` closes the session, as Asterisk does when it restarts.
    """

    def __init__(self, port: int) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(WAIT_S)
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        self.conn = conn
        conn.settimeout(WAIT_S)
        conn.sendall(b"Asterisk Call Manager/9.0.0\r\n")
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                block, _, buffer = buffer.partition(b"\r\n\r\n")
                headers = dict(line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line)
                action, head = headers.get("Action", ""), f"ActionID: {headers.get('ActionID', '')}\r\n"
                if action == "Login":
                    reply = f"Response: Success\r\n{head}Message: Authentication accepted\r\n\r\n"
                    reply += "Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"
                elif action == "Ping":
                    reply = f"Response: Success\r\n{head}Ping: Pong\r\n\r\n"
                elif action == "CoreShowChannels":
                    reply = f"Response: Success\r\n{head}EventList: start\r\nMessage: Channels will follow\r\n\r\n"
                    reply += f"Event: CoreShowChannelsComplete\r\n{head}EventList: Complete\r\nListItems: 0\r\n\r\n"
                else:
                    reply = f"Response: Error\r\n{head}Message: Not here\r\n\r\n"
                conn.sendall(reply.encode())
        except OSError:
            return

    def hang_up(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.server.close()
        self.hang_up()
        self.thread.join(WAIT_S)


def receive_until(sock: socket.socket, seen: list[bytes], wanted: Callable[[bytes], bool]) -> bytes:
    """Collect datagrams into ``seen`` until one is ``wanted`` (at most ``WAIT_S`` per datagram)."""
    while True:
        data = sock.recv(4096)  # raises TimeoutError after WAIT_S: the test fails, it does not hang
        seen.append(data)
        if wanted(data):
            return data


def test_salara_serve_tells_systemd_ready_ami_state_watchdog_reload_and_stop(
    tmp_path: Path, listener: tuple[str, socket.socket]
) -> None:
    path, sock = listener
    api, ami_port = free_port(), free_port()
    conf = tmp_path / "salara.conf"
    conf.write_text(
        f"[url]\nrest_server = 127.0.0.1:{api}\n[agi]\nlisten = 127.0.0.1:{free_port()}\n"
        f"[ami]\nport = {ami_port}\nauth = plain\nsecret = notify-test\nreconnect_max = 0.2\n"
    )
    conf.chmod(0o600)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SALARA_", "NOTIFY_", "WATCHDOG_"))}
    env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
    log = (tmp_path / "salara.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "salara", "-c", str(conf), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    seen: list[bytes] = []
    ami: TinyAMI | None = None
    try:
        ready = receive_until(sock, seen, lambda m: m.startswith(b"READY=1"))
        assert ready.startswith(
            b"READY=1\nSTATUS=serving; AMI not connected to 127.0.0.1:"
        )  # AMI down: READY all the same
        assert httpx.get(f"http://127.0.0.1:{api}/health", timeout=10).status_code == 200

        ami = TinyAMI(ami_port)
        up = receive_until(sock, seen, lambda m: m.startswith(b"STATUS="))
        assert up == f"STATUS=serving; AMI connected to 127.0.0.1:{ami_port}".encode()
        ami.hang_up()
        down = receive_until(sock, seen, lambda m: m.startswith(b"STATUS="))
        assert down.startswith(f"STATUS=serving; AMI not connected to 127.0.0.1:{ami_port}: ".encode())

        pings = [m for m in seen if m == b"WATCHDOG=1"]
        while len(pings) < 2:
            pings.append(receive_until(sock, seen, lambda m: m == b"WATCHDOG=1"))

        proc.send_signal(signal.SIGHUP)
        reloading = receive_until(sock, seen, lambda m: m.startswith(b"RELOADING=1"))
        assert reloading.split(b"\n")[1].startswith(b"MONOTONIC_USEC=")
        assert receive_until(sock, seen, lambda m: m.startswith(b"READY=1")).startswith(b"READY=1\nSTATUS=serving; ")

        proc.send_signal(signal.SIGTERM)
        receive_until(sock, seen, lambda m: m == b"STOPPING=1")
        assert proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if ami is not None:
            ami.close()
        log.close()
    messages = {m.split(b"\n")[0].split(b"=")[0] for m in seen}
    assert messages == {b"READY", b"STATUS", b"WATCHDOG", b"RELOADING", b"STOPPING"}
