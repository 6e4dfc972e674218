"""The HTTP side of access control and hard limits (the policy is :mod:`salara.auth`).

- :class:`SecurityMiddleware` (installed by :func:`install`) runs before every
  route, so a route added later is covered too: it authenticates the client
  (token, or loopback when no token is configured), then reads the body under
  ``[api] max_body_bytes`` and ``request_timeout`` and hands it on. Only
  ``GET /health`` is served without authentication.
- Routes check rights with ``Depends(require("admin"))`` (any right) or, for
  calls and messages, :func:`check` with the context and the number, which
  also counts the token's rate.
- :func:`http_protocol` is uvicorn's httptools protocol with a deadline and a
  size cap on request headers, which uvicorn itself does not have, and a cap
  on the connections one client address holds open (:class:`ClientConnections`).

Denials are logged with the client, the token's name and the reason, never
the token. Compat paths answer ``{"result": -2, "text": "Error: ..."}``, the
others ``{"error": "...", "message": "..."}``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salara.auth import Denial, Principal, Security, credential_from
from salara.config import Config, Right, load_tokens
from salara.errors import ConfigError

log = logging.getLogger(__name__)

ABORT_EXTENSION = "salara.abort"
"""ASGI scope extension salara's uvicorn protocol adds: ``{"abort": callable}`` drops the connection at once.

For a response whose client stopped reading: closing would wait for the
unread bytes to leave, which they never do (:class:`salara.api.v1.EventStreamResponse`).
"""

OPEN_PATHS = frozenset({"/health"})
"""Served without authentication (process liveness only)."""
API_PATH_PREFIXES = ("/v1/", "/metrics", "/ready", "/health", "/docs", "/redoc", "/openapi.json")
"""Paths whose errors use the ``{"error", "message"}`` shape; every other path is the compat endpoint."""

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    408: "request_timeout",
    413: "payload_too_large",
    429: "rate_limited",
    431: "headers_too_large",
}


def is_compat_path(path: str) -> bool:
    return not (path == "/v1" or path.startswith(API_PATH_PREFIXES))


def error_body(path: str, status: int, reason: str) -> dict[str, object]:
    if is_compat_path(path):
        return {"result": -2, "text": f"Error: {reason}"}
    return {"error": _CODES.get(status, "error"), "message": reason}


def denial_headers(denial: Denial) -> dict[str, str]:
    headers: dict[str, str] = {}
    if denial.status == 401:
        headers["www-authenticate"] = 'Bearer realm="salara"'
    if denial.retry_after_s is not None:
        headers["retry-after"] = str(denial.retry_after_s)
    return headers


def denial_response(path: str, denial: Denial) -> JSONResponse:
    return JSONResponse(error_body(path, denial.status, denial.reason), denial.status, denial_headers(denial))


def log_denial(method: str, path: str, client: str | None, who: str, denial: Denial) -> None:
    log.warning(
        "API request refused (%d): %s %r from %s, token %s: %s",
        denial.status,
        method,
        path[:200],
        client or "?",
        who,
        denial.reason,
    )


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

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security
        self.reloader = TokenReloader(security, security.config.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # salara has no websocket endpoint
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "")
        client = scope.get("client")
        host = client[0] if client else None
        headers = Headers(scope=scope)
        principal: Principal | None = None
        self.reloader.poll(time.monotonic())
        if path not in OPEN_PATHS:
            result = self.security.authenticate(host, credential_from(headers))
            if isinstance(result, Denial):
                log_denial(method, path, host, "-", result)
                await self._refuse(scope, receive, send, result)
                return
            principal = result
        scope.setdefault("state", {})["principal"] = principal
        api = self.security.config.api
        try:
            declared = int(headers.get("content-length", "0") or "0")
        except ValueError:
            declared = 0
        try:
            if declared > api.max_body_bytes:
                raise BodyTooLarge
            body = await asyncio.wait_for(self._read_body(receive, api.max_body_bytes), api.request_timeout)
        except BodyTooLarge:
            denial = Denial(413, f"body larger than {api.max_body_bytes} bytes")
        except TimeoutError:
            denial = Denial(408, f"the request body did not arrive within {api.request_timeout:g} s")
        except ClientGone:
            return
        else:
            await self.app(scope, _replay(body, receive), send)
            return
        log_denial(method, path, host, principal.name if principal else "-", denial)
        await self._refuse(scope, receive, send, denial, close=True)

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
                return b"".join(chunks)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, denial: Denial, close: bool = False) -> None:
        headers = denial_headers(denial)
        if close:  # the rest of the body is not wanted: end the connection after the answer
            headers["connection"] = "close"
        response = JSONResponse(error_body(scope.get("path", ""), denial.status, denial.reason), denial.status, headers)
        await response(scope, receive, send)


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


# -- for routes ----------------------------------------------------------------


class Refused(Exception):
    """Raised by route dependencies; answered in the path's error shape."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.reason)
        self.denial = denial


def security_of(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


def principal(request: Request) -> Principal:
    """Who sent ``request`` (set by the middleware). Refused (401) if nobody was authenticated."""
    found: Principal | None = request.scope.get("state", {}).get("principal")
    if found is None:
        raise Refused(Denial(401, "not authenticated"))
    return found


def check(
    request: Request, right: Right, context: str | None = None, number: str | None = None, *, spend: bool = True
) -> Denial | None:
    """Authorize ``request`` for ``right`` (and context/number); calls and messages also spend rate if ``spend``.

    Logs a denial. For routes that answer it themselves; see :func:`require` for a dependency.
    """
    who = principal(request)
    security = security_of(request)
    denial = security.authorize(who, right, context, number)
    if denial is None and spend and right in ("call", "message"):
        denial = security.spend(who, time.monotonic())
    if denial is not None:
        client = request.client.host if request.client else None
        log_denial(request.method, request.url.path, client, who.name, denial)
    return denial


class TokenAccess:
    """``/v1``'s :class:`~salara.api.v1.Access` over the request's principal: refusals raise :class:`Refused`."""

    def authorize(self, request: Request, right: Right, context: str | None, number: str | None) -> None:
        denial = check(request, right, context, number, spend=False)
        if denial is not None:
            raise Refused(denial)

    def spend(self, request: Request, right: Right) -> None:
        who = principal(request)
        denial = security_of(request).spend(who, time.monotonic())
        if denial is not None:
            client = request.client.host if request.client else None
            log_denial(request.method, request.url.path, client, who.name, denial)
            raise Refused(denial)

    def owner(self, request: Request) -> str:
        return principal(request).name


def authorize(request: Request, right: Right, context: str | None = None, number: str | None = None) -> None:
    """Like :func:`check`, but raises :class:`Refused` (answered by the handler :func:`install` adds)."""
    denial = check(request, right, context, number)
    if denial is not None:
        raise Refused(denial)


def require(right: Right) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the request's principal, which must hold ``right`` (else 403)."""

    def dependency(request: Request) -> Principal:
        authorize(request, right)
        return principal(request)

    return dependency


def install(app: FastAPI, security: Security) -> None:
    """Put ``security`` in front of every route of ``app``."""
    app.state.security = security
    app.add_middleware(SecurityMiddleware, security=security)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return denial_response(request.url.path, exc.denial)


# -- uvicorn: limits on connections and request headers -----------------------------


def client_key(host: str | None) -> str:
    """What :class:`ClientConnections` counts by: the IPv4 address, or the /64 of an IPv6 one.

    One IPv6 client usually holds a whole /64, so counting its addresses one
    by one would not cap it. A v4-mapped address counts as its IPv4 address.
    """
    if not host:
        return "?"
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ClientConnections:
    """Open connections by client address (:func:`client_key`), at most ``cap`` each (0: no cap).

    Without it, one client holding ``[api] max_connections`` connections
    (each trickling a byte now and then within ``request_timeout``) leaves
    uvicorn answering 503 to every other client. With it, one address holds
    at most ``cap``; what stays possible is a flood from many addresses.
    Refusals are logged at most once per ``log_interval_s``, so a flood
    does not flood the log too.
    """

    def __init__(self, cap: int, log_interval_s: float = 10.0) -> None:
        self.cap = cap
        self.log_interval_s = log_interval_s
        self.open_by_client: dict[str, int] = {}
        self.refused = 0
        self._unlogged = 0
        self._logged_at = float("-inf")

    def count(self, host: str | None) -> int:
        return self.open_by_client.get(client_key(host), 0)

    def opened(self, host: str | None) -> bool:
        """A connection from ``host`` opened: True if it may stay (now counted), False if over the cap."""
        key = client_key(host)
        count = self.open_by_client.get(key, 0)
        if self.cap and count >= self.cap:
            self.refused += 1
            return False
        self.open_by_client[key] = count + 1
        return True

    def closed(self, host: str | None) -> None:
        """A counted connection from ``host`` closed."""
        key = client_key(host)
        count = self.open_by_client.get(key, 0) - 1
        if count > 0:
            self.open_by_client[key] = count
        else:
            self.open_by_client.pop(key, None)

    def log_refusal(self, host: str | None, now: float) -> None:
        self._unlogged += 1
        if now - self._logged_at < self.log_interval_s:
            return
        log.warning(
            "API connection from %s closed (503): more than %d open connections from %s (%d refused so)",
            host or "?",
            self.cap,
            client_key(host),
            self._unlogged,
        )
        self._logged_at = now
        self._unlogged = 0


def http_protocol(
    header_timeout_s: float, max_header_bytes: int, max_connections_per_client: int = 0
) -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol with a deadline and a size cap on request headers, and a per-client cap.

    uvicorn (0.3x-0.5x) closes idle keep-alive connections but has no limit on
    how long a client may take to send a request's headers, nor (with
    httptools) on their size: a client trickling one header byte at a time
    would hold its connection forever. Here a request whose headers are not
    complete ``header_timeout_s`` after the connection opened (or after its
    first byte, on a kept-alive connection) gets 408 and the connection is
    closed; one whose headers exceed ``max_header_bytes`` gets 431. A
    connection beyond ``max_connections_per_client`` open ones of its client
    address (:class:`ClientConnections`; 0: no cap) gets 503 at once and is
    closed, before it can take one of uvicorn's ``limit_concurrency`` slots
    for long. None when httptools is not installed (then uvicorn's h11 limits
    apply, and no per-client cap).
    """
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        return None

    clients = ClientConnections(max_connections_per_client)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _awaiting_headers = True
        _header_bytes = 0
        _header_timer: asyncio.TimerHandle | None = None
        _counted = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if not clients.opened(host):
                clients.log_refusal(host, time.monotonic())
                self._refuse(503, "too many open connections from this address", log_it=False, retry_after_s=5)
                return
            self._counted = True
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted:
                self._counted = False
                clients.closed(self.client[0] if self.client else None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._awaiting_headers and not self.transport.is_closing():
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._refuse(431, f"request headers larger than {max_header_bytes} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope["extensions"] = {ABORT_EXTENSION: {"abort": self.transport.abort}}
            if not self._awaiting_headers:  # a further request on a kept-alive connection
                self._header_bytes = 0
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            self._awaiting_headers = True
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            self._awaiting_headers = False
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self._awaiting_headers and not self.transport.is_closing():
                self._refuse(408, f"request headers did not arrive within {header_timeout_s:g} s")

        def _refuse(self, status: int, reason: str, *, log_it: bool = True, retry_after_s: int | None = None) -> None:
            self._disarm()
            if log_it:
                client = self.client[0] if self.client else "?"
                log.warning("API connection from %s closed (%d): %s", client, status, reason)
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()  # an answer to an earlier request is under way
                return
            body = json.dumps({"result": -2, "text": f"Error: {reason}"}).encode()
            head: list[Any] = [
                STATUS_LINE[status],
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
            ]
            if retry_after_s is not None:
                head.append(b"retry-after: " + str(retry_after_s).encode() + b"\r\n")
            head.append(b"connection: close\r\n\r\n")
            self.transport.write(b"".join(head) + body)
            self.transport.close()

    return GuardedHttpToolsProtocol


def uvicorn_options(config: Config) -> dict[str, Any]:
    """uvicorn settings from ``[api]``: HTTPS, connection limits, header limits, trusted proxies.

    ``X-Forwarded-For`` is trusted from loopback only (a reverse proxy on this
    machine), whatever ``FORWARDED_ALLOW_IPS`` says: the loopback rule must
    not be fooled by a header from elsewhere.
    """
    api = config.api
    options: dict[str, Any] = {
        "limit_concurrency": api.max_connections,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": api.max_header_bytes,
        "proxy_headers": True,
        "forwarded_allow_ips": ["127.0.0.1", "::1"],
        "server_header": False,
    }
    protocol = http_protocol(api.request_timeout, api.max_header_bytes, api.max_connections_per_client)
    if protocol is not None:
        options["http"] = protocol
    if api.tls_cert:
        options["ssl_certfile"] = api.tls_cert
        options["ssl_keyfile"] = api.tls_key
    return options
