"""The ASGI middleware in front of every route: authentication, then the body within its limits.

:class:`SecurityMiddleware` (installed by :func:`salara.api.security.access.install`)
runs before every route, so a route added later is covered too: it
authenticates the client (token, or loopback when no token is configured;
:class:`~salara.api.security.tokens.Security`), then reads the body under
``[api] max_body_bytes`` and ``request_timeout`` and hands it on. Only
``GET /health`` is served without authentication, and a recording's signed
link (:func:`signed_link`) without a token. The tokens are re-read
when the config file changes (:class:`TokenReloader`). Refusals are answered
and logged by :mod:`salara.api.security.denials`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from pathlib import Path

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salara.api.security.browser import BrowserGate, covered
from salara.api.security.connections import OVER_CAP_EXTENSION
from salara.api.security.denials import denial_headers, error_body, log_denial
from salara.api.security.tokens import Denial, Principal, Security, credential_from
from salara.config import load_tokens
from salara.errors import ConfigError

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})
"""Served without authentication (process liveness only)."""
SIGNED_LINK = re.compile(r"/v1/recordings/[A-Za-z0-9._-]{1,64}")


def signed_link(path: str, query: bytes) -> bool:
    """A recording link carrying its own signature: its route checks it (:mod:`salara.api.v1.recordings`)."""
    return b"signature=" in query and SIGNED_LINK.fullmatch(path) is not None


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class TokenReloader:
    """Re-reads the ``[token NAME]`` sections when the config file changes (checked at most once a second).

    ``salara token create`` and ``revoke`` take effect without a restart. A
    file that no longer loads keeps the tokens in use, with an error logged.
    """

    def __init__(self, security: Security, path: Path | None, interval_s: float = 1.0) -> None:
        self.security = security
        self.path = path
        self.interval_s = interval_s
        self._stamp = self._mtime()
        self._checked = time.monotonic()

    def _mtime(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns if self.path else None
        except OSError:
            return None

    def poll(self, now: float) -> None:
        if self.path is None or now - self._checked < self.interval_s:
            return
        self._checked = now
        stamp = self._mtime()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            tokens = load_tokens(self.path)
        except ConfigError as exc:
            log.error("API tokens not reloaded (keeping those in use): %s", exc)
            return
        self.security.set_tokens(tokens)
        log.info("API tokens reloaded from %s: %s", self.path, ", ".join(tokens) or "none")


class SecurityMiddleware:
    """Authenticate every HTTP request, then read its body within the limits."""

    def __init__(self, app: ASGIApp, security: Security, browser: BrowserGate | None = None) -> None:
        self.app = app
        self.security = security
        self.browser = browser
        """Sessions and the cross-site guards of ``/ui``, the documentation and ``/v1`` (never the compat path)."""
        self.reloader = TokenReloader(security, security.config.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # salara has no websocket endpoint
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        denial = over_cap(scope)
        if denial is not None:  # relayed by a proxy for a client over its cap (logged by the protocol)
            await self._refuse(scope, receive, send, denial, close=True)
            return
        fields = header_fields(scope)
        admitted = self.admit(scope, fields)
        if isinstance(admitted, Denial):
            log_denial(scope.get("method", ""), scope.get("path", ""), client_host(scope), "-", admitted)
            await self._refuse(scope, receive, send, admitted)
            return
        scope.setdefault("state", {})["principal"] = admitted
        body = await self.read_body(receive, fields)
        if isinstance(body, bytes):
            await self.app(scope, _replay(body, receive), send)
            return
        if body is not None:
            who = admitted.name if admitted else "-"
            log_denial(scope.get("method", ""), scope.get("path", ""), client_host(scope), who, body)
            await self._refuse(scope, receive, send, body, close=True)

    def admit(self, scope: Scope, fields: dict[str, str]) -> Principal | Denial | None:
        """Who sends the HTTP request ``scope`` (headers ``fields``, from :func:`header_fields`).

        None for a path served to anyone (``/health``, a signed recording
        link); a :class:`Denial` (401, 403) to answer, not yet logged.
        """
        path: str = scope.get("path", "")
        self.reloader.poll(time.monotonic())
        if path in OPEN_PATHS or signed_link(path, scope.get("query_string", b"")):
            return None
        result = self.security.authenticate(client_host(scope), credential_from(fields))
        if self.browser is not None and covered(path):  # sessions, cross-site and rebinding guards
            return self.browser.authenticate(
                scope.get("method", ""), path, Headers(scope=scope), result, time.monotonic()
            )
        return result

    async def read_body(self, receive: Receive, fields: dict[str, str]) -> bytes | Denial | None:
        """The request's body, read within ``[api] max_body_bytes`` and ``request_timeout`` (seconds).

        A :class:`Denial` (413, 408) to answer, not yet logged; None when the client left.
        """
        api = self.security.config.api
        too_big = self.body_denial(fields, 0)
        if too_big is not None:
            return too_big
        try:
            if body_arrived(receive):  # nothing to wait for: no timer to set and cancel
                return await self._read_body(receive, api.max_body_bytes)
            async with asyncio.timeout(api.request_timeout):  # a timer, not a task as wait_for makes
                return await self._read_body(receive, api.max_body_bytes)
        except BodyTooLarge:
            return too_large(api.max_body_bytes)
        except TimeoutError:
            return Denial(408, f"the request body did not arrive within {api.request_timeout:g} s")
        except ClientGone:
            return None

    def body_denial(self, fields: dict[str, str], size: int) -> Denial | None:
        """The 413 for a body declared (``content-length``) or read (``size`` bytes) over the limit, else None."""
        limit = self.security.config.api.max_body_bytes
        try:
            declared = int(fields.get("content-length", "0") or "0")
        except ValueError:
            declared = 0
        return too_large(limit) if declared > limit or size > limit else None

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, denial: Denial, close: bool = False) -> None:
        headers = denial_headers(denial)
        if close:  # the rest of the body is not wanted: end the connection after the answer
            headers["connection"] = "close"
        response = JSONResponse(error_body(scope.get("path", ""), denial.status, denial.reason), denial.status, headers)
        await response(scope, receive, send)


def too_large(limit: int) -> Denial:
    """The 413 for a body over ``limit`` bytes (``[api] max_body_bytes``), declared or read."""
    return Denial(413, f"body larger than {limit} bytes")


def client_host(scope: Scope) -> str | None:
    """The client's address of an ASGI scope (after uvicorn's proxy headers), or None."""
    client = scope.get("client")
    return client[0] if client else None


def over_cap(scope: Scope) -> Denial | None:
    """The 503 for a request a trusted proxy relayed for a client over its connection cap, else None."""
    over = scope.get("extensions", {}).get(OVER_CAP_EXTENSION)
    if over is None:
        return None
    return Denial(503, "too many open connections from this address", over.get("retry_after_s"))


def body_arrived(receive: Receive) -> bool:
    """Whether uvicorn already holds the whole body ``receive`` gives (so reading it cannot wait).

    uvicorn's ``receive`` is its request cycle's bound method; the cycle's
    ``more_body`` is False once the request's last byte arrived (uvicorn
    0.54, the pinned minor). Anything else: False (read under the timeout).
    """
    cycle = getattr(receive, "__self__", None)
    return cycle is not None and getattr(cycle, "more_body", True) is False and hasattr(cycle, "body")


def header_fields(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name, the first of each (as ``Headers.get`` reads them), decoded once.

    Starlette's ``Headers`` decodes every name again on each look-up, and a
    missing header costs an exception; the middleware looks up three on
    every request.
    """
    fields: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        if key not in fields:
            fields[key] = value.decode("latin-1")
    return fields


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then waits on the real one (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
