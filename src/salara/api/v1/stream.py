"""The response of the live event stream: Server-Sent Events that give up on a client that stopped reading.

:class:`EventStreamResponse` is ``GET /v1/events``' response
(:mod:`salara.api.v1.events`); what it sends comes from the event hub
(``EventHub.stream``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from salara.api.security.connections import ABORT_EXTENSION


class StreamStalled(Exception):
    """A write of a stream waited longer than its send timeout: the client stopped reading."""


class EventStreamResponse(StreamingResponse):
    """Server-Sent Events that end when one write waits ``send_timeout_s`` seconds (the client stopped reading).

    A client that stops reading fills the socket, and then every write of the
    stream waits, without end, holding the connection. Here such a stream
    calls ``on_stall`` and drops the connection through the scope extension
    :data:`~salara.api.security.connections.ABORT_EXTENSION` (salara's uvicorn protocol
    offers it); without it, :class:`StreamStalled` ends the response and the
    server closes the connection.
    """

    def __init__(
        self,
        content: Any,
        *,
        send_timeout_s: float,
        on_stall: Callable[[], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, headers=headers, media_type="text/event-stream")
        self.send_timeout_s = send_timeout_s
        self.on_stall = on_stall
        self._abort: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extension = scope.get("extensions", {}).get(ABORT_EXTENSION)
        self._abort = extension.get("abort") if isinstance(extension, dict) else None
        await super().__call__(scope, receive, send)

    async def _send(self, send: Send, message: Message) -> None:
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await send(message)
        except TimeoutError:
            raise StreamStalled(f"no write went through within {self.send_timeout_s:g} s") from None

    async def stream_response(self, send: Send) -> None:
        try:
            await self._send(
                send, {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in self.body_iterator:
                data = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
                await self._send(send, {"type": "http.response.body", "body": data, "more_body": True})
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
        except StreamStalled:
            self.on_stall()
            if self._abort is None:
                raise
            self._abort()
            # The server sees the connection lost and lets this last write through at once.
            async with asyncio.timeout(self.send_timeout_s):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()
