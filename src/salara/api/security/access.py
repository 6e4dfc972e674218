"""Access control for routes, as FastAPI dependencies, and :func:`install` of the whole of it.

The middleware (:mod:`salara.api.security.middleware`) has authenticated the
client by the time a route runs; here routes check rights:
``Depends(require("admin"))`` (any right) or, for calls and messages,
:func:`check` / :func:`authorize` with the context and the number, which
also counts the token's rate. ``/v1`` gets the same through
:class:`TokenAccess`. A refusal raises :class:`Refused`, answered in the
path's error shape (:mod:`salara.api.security.denials`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from salara.api.security.browser import BrowserGate
from salara.api.security.denials import denial_response, log_denial
from salara.api.security.middleware import SecurityMiddleware
from salara.api.security.tokens import Denial, Principal, Security
from salara.calls.visibility import Viewer
from salara.config import Right


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
    """``/v1``'s :class:`~salara.api.v1.access.Access` over the request's principal: refusals raise :class:`Refused`."""

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

    def viewer(self, request: Request) -> Viewer:
        who = principal(request)
        return Viewer(who.name, "admin" in who.rights, who.contexts)


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


def install(app: FastAPI, security: Security, browser: BrowserGate | None = None) -> None:
    """Put ``security`` in front of every route of ``app`` (and ``browser``'s sessions and guards, when given)."""
    app.state.security = security
    app.add_middleware(SecurityMiddleware, security=security, browser=browser)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return denial_response(request.url.path, exc.denial)
