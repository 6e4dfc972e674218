"""The client and server addresses salara's uvicorn protocol puts in a request's scope.

It reads them from the transport (``peername``, ``sockname``), not through
its socket as uvicorn does: served here on real loopback sockets, on uvloop
(as salara runs) and on asyncio's own loop, over IPv4 and IPv6.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from salara.api.security.connections import http_protocol, socket_address


async def echo_addresses(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering its scope's ``client`` and ``server``."""
    if scope["type"] != "http":
        return
    body = json.dumps({"client": scope["client"], "server": scope["server"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def ask(host: str) -> tuple[dict[str, Any], tuple[Any, ...], tuple[Any, ...]]:
    """What the protocol put in the scope; the client socket's own name and the server's."""
    import uvicorn
    from uvicorn.server import ServerState

    protocol_class: Any = http_protocol(10.0, 8192)
    assert protocol_class is not None
    config = uvicorn.Config(echo_addresses, http=protocol_class, lifespan="off")
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: protocol_class(config=config, server_state=state, app_state={}), host, 0)
    try:
        listening = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(host, listening[1])
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        mine = writer.get_extra_info("sockname")
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return json.loads(answer.split(b"\r\n\r\n", 1)[1]), mine, listening


LOOPS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {"uvloop": uvloop.run, "asyncio": asyncio.run}


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_scope_has_the_connection_s_own_addresses(loop: str, host: str) -> None:
    if host == "::1" and not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    seen, mine, listening = LOOPS[loop](ask(host))
    assert seen["client"] == [mine[0], mine[1]]
    assert seen["server"] == [listening[0], listening[1]]


def test_socket_names_read_as_uvicorn_reads_them() -> None:
    assert socket_address(("192.0.2.7", 5038)) == ("192.0.2.7", 5038)
    assert socket_address(("2001:db8::7", 5038, 0, 0)) == ("2001:db8::7", 5038)
    assert socket_address("/run/salara.sock", path=True) == ("/run/salara.sock", None)
    assert socket_address("/run/client.sock") is None  # a client has a TCP address, or none
    assert socket_address("", path=False) is None
    assert socket_address(None, path=True) is None
