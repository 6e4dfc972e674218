"""``/ui``: the web console's page, its files, sign-in and the JSON its views read.

- ``GET /ui`` (and ``/ui/``): the page; ``GET /ui/static/<file>``: its
  script, style and the vendored documentation assets (package data, no
  build step, nothing from another host). Both are served without a
  session (the page then shows only the sign-in), under a
  Content-Security-Policy that allows nothing but this server and no
  inline script (:data:`CSP`).
- ``POST /ui/api/session`` ``{"token": "..."}``: checks the token against the
  configured ones and sets the session cookie
  (:mod:`salara.api.security.browser`); ``GET`` says who is signed in, with
  which rights and the CSRF token the page sends back; ``DELETE`` signs out.
- ``GET /ui/api/calls/live`` (right ``state``): Server-Sent Events of the
  active calls (:mod:`salara.api.ui.feed`); ``GET /ui/api/calls/recent``
  (``state``): ended calls with their outcome; ``GET /ui/api/health``
  (``state``): :class:`~salara.api.ui.views.Health`.

Everything the views show from AMI, the CRM or callers is put in the page
as text by the script (``textContent``), never as HTML.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from salara.api.security import access as security
from salara.api.security.browser import COOKIE, Sessions, session_id_of
from salara.api.security.tokens import Principal, hash_token
from salara.api.ui.feed import MAX_STREAMS, CallFeed, live_calls
from salara.api.ui.views import Health, recent_calls
from salara.api.v1.stream import EventStreamResponse
from salara.control import CallControl
from salara.metrics import Metrics

STATIC: Final = Path(__file__).resolve().parent / "static"
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Nothing but this server, no inline script or style, no framing."""
UI_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
STREAM_SEND_TIMEOUT_S: Final = 30.0


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256, description="An API token ([token NAME]).")


def static_files(root: Path = STATIC) -> dict[str, Path]:
    """Every file the console serves, by its path under ``/ui/static/`` (a fixed list: no path is resolved later)."""
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def who(principal: Principal, csrf: str | None, has_tokens: bool) -> dict[str, Any]:
    """``GET /ui/api/session``'s body: the token's name, rights and contexts, the CSRF token, whether tokens exist."""
    return {
        "name": principal.name,
        "rights": sorted(principal.rights),
        "contexts": None if principal.contexts is None else sorted(principal.contexts),
        "csrf": csrf,
        "tokens": has_tokens,
    }


def create_router(control: CallControl, metrics: Metrics, sessions: Sessions, feed: CallFeed) -> APIRouter:
    """The ``/ui`` routes over ``control`` (calls), ``metrics`` (health, latency) and ``sessions``."""
    router = APIRouter(prefix="/ui", include_in_schema=False)
    files = static_files()
    health = Health(control, metrics)
    state = [Depends(security.require("state"))]
    access = security.TokenAccess()
    secure_cookie = bool(control.config.api.tls_cert)

    def page() -> Response:
        return FileResponse(STATIC / "index.html", media_type=MEDIA_TYPES[".html"], headers=UI_HEADERS)

    router.add_api_route("", page, methods=["GET"])
    router.add_api_route("/", page, methods=["GET"])

    @router.get("/static/{name:path}")
    async def static(name: str) -> Response:
        path = files.get(name)
        if path is None:
            return JSONResponse({"error": "not_found", "message": "no such file"}, 404, headers=UI_HEADERS)
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=UI_HEADERS)

    @router.post("/api/session")
    async def sign_in(request: Request, body: SignIn) -> JSONResponse:
        guard = security.security_of(request)
        if not guard.has_tokens:  # loopback only, no token: nothing to sign in with
            return JSONResponse(who(security.principal(request), None, False), headers=UI_HEADERS)
        found = guard.identify(body.token)
        if found is None:
            return JSONResponse(
                {"error": "unauthorized", "message": "this token is not configured"}, 401, headers=UI_HEADERS
            )
        session = sessions.create(hash_token(body.token), time.monotonic())
        response = JSONResponse(who(found, session.csrf, True), headers=UI_HEADERS)
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(sessions.ttl_s),
            path="/",
            secure=secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return response

    @router.get("/api/session")
    async def whoami(request: Request) -> JSONResponse:
        principal = security.principal(request)  # 401 without a session or token
        session = sessions.get(session_id_of(request.headers), time.monotonic())
        guard = security.security_of(request)
        return JSONResponse(who(principal, session.csrf if session else None, guard.has_tokens), headers=UI_HEADERS)

    @router.delete("/api/session")
    async def sign_out(request: Request) -> JSONResponse:
        security.principal(request)
        sessions.drop(session_id_of(request.headers))
        response = JSONResponse({"signed_out": True}, headers=UI_HEADERS)
        response.delete_cookie(COOKIE, path="/", secure=secure_cookie, httponly=True, samesite="strict")
        return response

    @router.get("/api/calls/live", dependencies=state)
    async def live(request: Request) -> Response:
        if feed.streams >= MAX_STREAMS:
            message = f"{MAX_STREAMS} live streams are open already"
            return JSONResponse(
                {"error": "too_many_streams", "message": message}, 503, headers={**UI_HEADERS, "Retry-After": "5"}
            )
        return EventStreamResponse(
            live_calls(control, feed, access.viewer(request)),
            send_timeout_s=STREAM_SEND_TIMEOUT_S,
            on_stall=lambda: None,
            headers={**UI_HEADERS, "Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/api/calls/recent", dependencies=state)
    async def recent(
        request: Request,
        number: Annotated[str | None, Query(max_length=80)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> JSONResponse:
        body = recent_calls(control, access.viewer(request), number.strip() if number else None, limit)
        return JSONResponse(body, headers=UI_HEADERS)

    @router.get("/api/health", dependencies=state)
    async def health_view() -> JSONResponse:
        return JSONResponse(await health.body(), headers=UI_HEADERS)

    async def unknown(rest: str) -> JSONResponse:
        return JSONResponse({"error": "not_found", "message": "no such page"}, 404, headers=UI_HEADERS)

    # Every other path under /ui is the console's, never the compat endpoint's (which the cookie must not reach).
    router.add_api_route("/{rest:path}", unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    return router
