"""The request-header deadline (salara.api.security.deadlines): one timer for a server's connections.

The protocol is driven over the fake transports of test_api_security.py on
a real event loop; the loop's clock is what the deadlines read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from salara import config
from salara.api.app import create_app
from salara.api.security.deadlines import HeaderDeadlines
from salara.api.security.serving import uvicorn_options
from salara.control import CallControl
from tests.unit.test_api_security import FakeAMI, FakeTransport


class Connection:
    def __init__(self, due: float) -> None:
        self.due = due
        self.late = 0

    def headers_overdue(self, now: float) -> bool:
        return now >= self.due

    def headers_late(self) -> None:
        self.late += 1


async def until(condition: Any, limit_s: float = 5.0) -> None:
    """Wait (polling the loop) until ``condition()``, at most ``limit_s`` seconds."""
    for _ in range(int(limit_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_the_tick_is_a_tenth_of_the_timeout_within_bounds() -> None:
    assert HeaderDeadlines(2.0).tick_s == 0.2
    assert HeaderDeadlines(0.1).tick_s == 0.05
    assert HeaderDeadlines(600).tick_s == 1.0


async def test_only_overdue_connections_are_told_and_the_timer_stops_with_the_last() -> None:
    loop = asyncio.get_running_loop()
    deadlines = HeaderDeadlines(0.5)
    late, on_time = Connection(loop.time() + 0.1), Connection(loop.time() + 3600)
    deadlines.watch(late, loop)
    deadlines.watch(on_time, loop)
    assert deadlines.running
    await until(lambda: late.late > 0)
    assert on_time.late == 0
    deadlines.forget(late)
    deadlines.forget(on_time)
    assert len(deadlines) == 0
    await until(lambda: not deadlines.running)
    deadlines.watch(on_time, loop)  # a new connection starts it again
    assert deadlines.running
    deadlines.forget(on_time)


class Failing(Connection):
    def headers_late(self) -> None:
        super().headers_late()
        raise RuntimeError("refusal failed")


async def test_a_connection_that_fails_its_refusal_does_not_stop_the_others_deadlines() -> None:
    loop = asyncio.get_running_loop()
    deadlines = HeaderDeadlines(0.5)
    failing = Failing(loop.time())
    deadlines.watch(failing, loop)
    await until(lambda: failing.late > 0)
    later = Connection(loop.time() + 0.1)
    deadlines.watch(later, loop)
    await until(lambda: later.late > 0)
    assert failing.late == 1  # told once, then no longer watched
    deadlines.forget(later)
    await until(lambda: not deadlines.running)


def protocol_for(environ: dict[str, str]) -> Any:
    import uvicorn
    from uvicorn.server import ServerState

    loaded = config.load(None, environ=environ)
    options = uvicorn_options(loaded)
    protocol_class = options.pop("http")
    server = uvicorn.Config(create_app(CallControl.over(FakeAMI(), loaded)), http=protocol_class, **options)  # type: ignore[arg-type]
    state = ServerState()

    def connect(port: int) -> tuple[Any, FakeTransport]:
        protocol = protocol_class(config=server, server_state=state, app_state={})
        transport = FakeTransport(("127.0.0.1", port))
        protocol.connection_made(transport)
        return protocol, transport

    return connect


async def test_headers_late_get_408_and_whole_ones_do_not() -> None:
    connect = protocol_for({"SALARA_API_REQUEST_TIMEOUT": "0.3"})
    silent_protocol, silent = connect(40001)
    trickle_protocol, trickle = connect(40002)
    trickle_protocol.data_received(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    served_protocol, served = connect(40003)
    served_protocol.data_received(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # then idle, kept alive
    await until(lambda: silent.closed and trickle.closed)
    for transport in (silent, trickle):
        assert transport.written.startswith(b"HTTP/1.1 408 ")
        assert b"request headers did not arrive within 0.3 s" in transport.written
    await asyncio.sleep(0.4)  # past its deadline too, but its headers came whole
    assert not served.written.startswith(b"HTTP/1.1 408 ")
    assert not served.closed
    for protocol in (silent_protocol, trickle_protocol, served_protocol):
        protocol.connection_lost(None)


async def kept_alive(port: int) -> tuple[Any, FakeTransport]:
    """A connection (request timeout 0.3 s) kept alive after one request's answer."""
    protocol, transport = protocol_for({"SALARA_API_REQUEST_TIMEOUT": "0.3"})(port)
    protocol.data_received(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    await until(lambda: b"\r\n\r\n" in transport.written)
    return protocol, transport


async def late_next_request(protocol: Any, transport: FakeTransport, data: bytes) -> None:
    """``data`` read after the answer, never followed: the connection gets 408."""
    answered = len(transport.written)
    protocol.data_received(data)
    await until(lambda: transport.closed)
    assert transport.written[answered:].startswith(b"HTTP/1.1 408 ")
    protocol.connection_lost(None)


async def test_a_kept_alive_connection_s_next_request_has_a_deadline_of_its_own() -> None:
    protocol, transport = await kept_alive(40004)
    await asyncio.sleep(0.5)  # idle between requests longer than the deadline: not a late request
    assert not transport.closed
    await late_next_request(protocol, transport, b"GET /health HTTP/1.1\r\n")  # the next one, never finished


async def test_bytes_between_requests_start_the_next_one_s_deadline() -> None:
    # The parser skips CR LF between requests without beginning one, and uvicorn's keep-alive timer stops at
    # any byte: the deadline must start at the first byte, or such a client holds its connection forever.
    protocol, transport = await kept_alive(40005)
    await late_next_request(protocol, transport, b"\r\n")


async def test_headers_over_the_limit_get_431_whether_they_come_in_one_read_or_several() -> None:
    connect = protocol_for({"SALARA_API_MAX_HEADER_BYTES": "2048"})
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n"
    whole_protocol, whole = connect(40006)
    whole_protocol.data_received(head)
    split_protocol, split = connect(40007)
    split_protocol.data_received(head[:1500])
    split_protocol.data_received(head[1500:])
    fits_protocol, fits = connect(40008)
    fits_protocol.data_received(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 1900 + b"\r\n\r\n")
    await until(lambda: b"\r\n\r\n" in fits.written)
    for transport in (whole, split):
        assert transport.closed and transport.written.startswith(b"HTTP/1.1 431 ")
    assert fits.written.startswith(b"HTTP/1.1 200 ")
    for protocol in (whole_protocol, split_protocol, fits_protocol):
        protocol.connection_lost(None)
