"""``[general] answers = module``: compat errors byte for byte as the old module's code sent them.

The old module (built for Asterisk 22) answered any request it could not
serve with exactly ``{"result":-2,"text":"Error"}``, where salara (and the
module's README) adds the reason, ``"Error: <why>"``. :class:`ModuleErrors`
turns every compat error body into the module's, wherever in the app it was
made (the endpoint, authentication and limits, an unknown method), and keeps
salara's HTTP status and headers. Channel-state answers in that mode are
made by :func:`salara.api.compat.answers.channel_answer`; the server's own
refusals (408, 431, 503 before a request reaches the app) by
:mod:`salara.api.security.connections`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MODULE_ERROR_BODY = b'{"result":-2,"text":"Error"}'
"""The old module's answer to any request it could not serve."""

COMPAT_ERROR_PREFIX = b'{"result":-2,'
"""How every compat error body starts (rendered compact, as JSONResponse does)."""


class ModuleErrors:
    """ASGI middleware: an error answer (status 400 or more) whose body is a compat error gets the module's body.

    Other answers (every 2xx and 3xx, and ``/v1``'s ``{"error": ...}``
    bodies) pass through untouched and unbuffered; an error body is held
    until complete (they are small), then sent with its ``content-length``
    set to the new body's.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_answer(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            start = held
            if body.startswith(COMPAT_ERROR_PREFIX):
                body = MODULE_ERROR_BODY
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
            held = None
            chunks.clear()
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, send_answer)
