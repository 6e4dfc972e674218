"""``[api] trusted_proxies``: whose X-Forwarded-For is trusted, and how a reverse proxy's clients are capped.

salara's uvicorn protocol is driven here over fake transports (as in
test_api_security.py), the app behind it real and AMI faked; the same runs on
a real salara in tests/integration/test_api_hardening.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from salara import config
from salara.api.app import create_app
from salara.api.security.serving import uvicorn_options
from salara.control import CallControl
from salara.errors import ConfigError
from tests.unit.test_api_security import FakeAMI, FakeTransport

PROXY = "127.0.0.1"


class Transport(FakeTransport):
    def can_write_eof(self) -> bool:
        return False


class Server:
    """salara's protocol class over one server state, as uvicorn would run it."""

    def __init__(self, **environ: str) -> None:
        import uvicorn
        from uvicorn.server import ServerState

        environ = {
            "SALARA_API_MAX_CONNECTIONS_PER_CLIENT": "2",
            "SALARA_API_ALLOW_REMOTE_WITHOUT_TOKEN": "yes",
            **environ,
        }
        self.loaded = config.load(None, environ=environ)
        options = uvicorn_options(self.loaded)
        self.protocol_class = options.pop("http")
        app = create_app(CallControl.over(FakeAMI(), self.loaded))  # type: ignore[arg-type]
        self.config = uvicorn.Config(app, http=self.protocol_class, **options)
        self.state = ServerState()
        self.opened: list[Any] = []

    def connect(self, host: str, port: int = 40000) -> tuple[Any, FakeTransport]:
        protocol = self.protocol_class(config=self.config, server_state=self.state, app_state={})
        transport = Transport((host, port))
        protocol.connection_made(transport)
        self.opened.append(protocol)
        return protocol, transport

    async def request(self, host: str, head: bytes, port: int = 40000) -> tuple[Any, FakeTransport]:
        protocol, transport = self.connect(host, port)
        if not transport.closed:
            protocol.data_received(head)
        await asyncio.sleep(0.05)  # the app answers
        return protocol, transport

    async def close(self) -> None:
        for protocol in self.opened:
            protocol.connection_lost(None)
        await asyncio.sleep(0.05)


def relayed(client: str, path: str = "/health", extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\n".encode() + extra + b"\r\n"


def waiting_for_its_body(client: str) -> bytes:
    head = f"POST / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\nContent-Length: 20\r\n\r\n"
    return head.encode()


def status(transport: FakeTransport) -> bytes:
    return transport.written.split(b"\r\n", 1)[0]


async def test_a_proxy_s_connections_are_not_capped_once_it_relays() -> None:
    server = Server()
    try:
        _, first = await server.request(PROXY, relayed("203.0.113.1"))
        assert status(first) == b"HTTP/1.1 200 OK"
        later = [await server.request(PROXY, relayed(f"203.0.113.{10 + n}"), 40001 + n) for n in range(6)]
        assert [status(transport) for _, transport in later] == [b"HTTP/1.1 200 OK"] * 6
        assert not any(transport.closed for _, transport in later)
    finally:
        await server.close()


async def test_a_proxy_s_clients_are_counted_by_x_forwarded_for() -> None:
    server = Server()
    try:
        await server.request(PROXY, relayed("203.0.113.1"))
        held = [await server.request(PROXY, waiting_for_its_body("198.51.100.7"), 40001 + n) for n in range(2)]
        assert [transport.written for _, transport in held] == [b"", b""]  # both wait for their bodies
        _, third = await server.request(PROXY, waiting_for_its_body("198.51.100.7"), 40009)
        assert status(third) == b"HTTP/1.1 503 Service Unavailable"
        assert b"retry-after: 5" in third.written and b"too many open connections" in third.written
        assert b"connection: close" in third.written
        _, other = await server.request(PROXY, relayed("198.51.100.8"), 40010)  # another client of the proxy
        assert status(other) == b"HTTP/1.1 200 OK"
        held[0][0].connection_lost(None)  # one of 198.51.100.7's requests is over: its slot is free again
        await asyncio.sleep(0.05)
        _, again = await server.request(PROXY, relayed("198.51.100.7"), 40011)
        assert status(again) == b"HTTP/1.1 200 OK"
    finally:
        await server.close()


async def test_a_request_that_is_answered_frees_its_client_s_slot() -> None:
    server = Server()
    try:
        protocol, transport = await server.request(PROXY, relayed("198.51.100.7"))
        for _ in range(5):  # one kept-alive connection, one request after another
            transport.written = b""
            protocol.data_received(relayed("198.51.100.7"))
            await asyncio.sleep(0.05)
            assert status(transport) == b"HTTP/1.1 200 OK"
    finally:
        await server.close()


async def test_a_proxy_that_trickles_headers_is_still_capped() -> None:
    server = Server()
    try:
        await server.request(PROXY, relayed("203.0.113.1"))
        trickling = [await server.request(PROXY, b"GET / HTTP/1.1\r\nHo", 40001 + n) for n in range(3)]
        assert [transport.closed for _, transport in trickling] == [False, False, True]
        assert status(trickling[2][1]) == b"HTTP/1.1 503 Service Unavailable"
    finally:
        await server.close()


async def test_without_relaying_a_trusted_address_is_capped_as_any_client() -> None:
    server = Server()
    try:
        held = [server.connect(PROXY, 40000 + n) for n in range(2)]
        _, extra = server.connect(PROXY, 40009)
        assert extra.closed and status(extra) == b"HTTP/1.1 503 Service Unavailable"
        assert not any(transport.closed for _, transport in held)
    finally:
        await server.close()


async def test_an_untrusted_address_s_x_forwarded_for_counts_for_nothing() -> None:
    server = Server()
    try:
        await server.request("192.0.2.5", relayed("203.0.113.1"))
        second, _ = server.connect("192.0.2.5", 40001)
        _, third = server.connect("192.0.2.5", 40002)
        assert third.closed and status(third) == b"HTTP/1.1 503 Service Unavailable"
        assert second is not None
    finally:
        await server.close()


async def test_trusted_proxies_can_be_set_and_emptied() -> None:
    server = Server(SALARA_API_TRUSTED_PROXIES="192.0.2.0/24")
    try:
        await server.request("192.0.2.5", relayed("203.0.113.1"))
        later = [await server.request("192.0.2.5", relayed("203.0.113.2"), 40001 + n) for n in range(3)]
        assert [status(transport) for _, transport in later] == [b"HTTP/1.1 200 OK"] * 3
        await server.request(PROXY, relayed("203.0.113.1"), 40010)  # loopback is no proxy now
        server.connect(PROXY, 40011)
        _, extra = server.connect(PROXY, 40012)
        assert extra.closed
    finally:
        await server.close()


def test_trusted_proxies_is_the_x_forwarded_for_trust() -> None:
    default = config.Config()
    assert default.api.trusted_proxies == ("127.0.0.1", "::1")
    assert uvicorn_options(default)["forwarded_allow_ips"] == ["127.0.0.1", "::1"]
    custom = config.build(config.parse_text("[api]\ntrusted_proxies = 10.1.0.0/16, 192.0.2.1, ::1\n"))
    assert uvicorn_options(custom)["forwarded_allow_ips"] == ["10.1.0.0/16", "192.0.2.1", "::1"]
    nobody = config.build(config.parse_text("[api]\ntrusted_proxies =\n"))
    assert uvicorn_options(nobody)["forwarded_allow_ips"] == []


@pytest.mark.parametrize("value", ["*", "proxy.example", "10.1.0.1/16", "127.0.0.1:8080"])
def test_trusted_proxies_are_addresses_or_networks(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.build(config.parse_text(f"[api]\ntrusted_proxies = {value}\n"))
    assert "[api] trusted_proxies" in str(caught.value)
