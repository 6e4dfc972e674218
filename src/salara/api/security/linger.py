"""The lingering close of a connection whose request body was refused before it all arrived.

uvicorn closes the connection as soon as an answer with ``Connection:
close`` is sent. When the client is still sending the request body (a 413
for a big body sent without ``Expect: 100-continue``), closing with unread
bytes makes the kernel reset the connection, and the client gets a reset
while sending instead of the answer. salara's protocol
(:func:`salara.api.security.connections.http_protocol`) gives each request
a :class:`RequestTransport`, whose ``close`` lets the protocol half-close
(the answer, then the end of its stream), read and drop the rest for at most
:data:`LINGER_S` seconds and :data:`LINGER_BYTES` bytes, and only then close.
"""

from __future__ import annotations

import asyncio
from typing import Any

LINGER_S = 5.0
"""Longest time the rest of a refused request body is read and dropped before the connection is closed."""
LINGER_BYTES = 16 * 1024 * 1024
"""Most bytes of a refused request body read and dropped so; the connection is closed beyond."""


class RequestTransport:
    """The transport as one request's uvicorn cycle sees it.

    ``close`` asks the protocol for a lingering close of the connection
    (``protocol.close_after_answer(cycle)``); everything else is the real transport's.
    """

    def __init__(self, protocol: Any, cycle: Any) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._transport: asyncio.Transport = protocol.transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_answer(self._cycle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
