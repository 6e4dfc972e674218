"""A WebSocket upgrade on salara's uvicorn protocol: the connection stops being the HTTP protocol's.

salara has no WebSocket endpoint (the security middleware closes any with
1008, which uvicorn answers 403), but uvicorn hands an upgrade request's
connection to its WebSocket protocol, and the HTTP protocol is never told
the connection closed. What it counted for the connection (the per-client
cap, the header deadline) must be given back at the hand-over. Served here
on real loopback sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

from salara import config
from salara.api.app import create_app
from salara.api.security.serving import uvicorn_options
from salara.control import CallControl
from tests.unit.test_api_security import FakeAMI

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


async def test_upgraded_connections_do_not_stay_counted_for_their_client() -> None:
    import uvicorn
    from uvicorn.server import ServerState

    loaded = config.load(None, environ={"SALARA_API_MAX_CONNECTIONS_PER_CLIENT": "2"})
    options = uvicorn_options(loaded)
    protocol_class: Any = options.pop("http")
    server_config = uvicorn.Config(create_app(CallControl.over(FakeAMI(), loaded)), http=protocol_class, **options)
    server_config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: protocol_class(config=server_config, server_state=state, app_state={}), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        for _ in range(4):  # twice the cap, one after the other
            refused = await exchange(port, UPGRADE)
            assert refused.startswith(b"HTTP/1.1 403 "), refused[:80]
        for _ in range(50):  # the hand-over is given back as the upgraded connections close
            if not any(isinstance(c, protocol_class) for c in state.connections):
                break
            await asyncio.sleep(0.02)
        health = await exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert health.startswith(b"HTTP/1.1 200 "), health[:120]
        assert not [c for c in state.connections if isinstance(c, protocol_class)]
    finally:
        server.close()
        await server.wait_closed()
