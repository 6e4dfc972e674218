"""The HTTP application: health, readiness and metrics, ``/v1``, then the compat endpoint on every other path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Depends, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse

import salara
from salara.api import v1
from salara.api.compat import endpoint as compat
from salara.api.compat.dispatch import COMPAT_PATH, CompatFirst
from salara.api.compat.module import ModuleErrors
from salara.api.openapi import install_openapi
from salara.api.requestmetrics import MetricsMiddleware
from salara.api.security import access as security
from salara.api.security.browser import BrowserGate, Sessions
from salara.api.security.tokens import Security
from salara.api.ui.feed import CallFeed
from salara.api.ui.routes import create_router as ui_router
from salara.control import CallControl
from salara.crm.admin import WebhookAdmin
from salara.events.hub import EventHub
from salara.metrics import CONTENT_TYPE, Metrics, Sources

if TYPE_CHECKING:
    from salara.routing.script import Router


def create_app(
    control: CallControl,
    *,
    hub: EventHub | None = None,
    metrics: Metrics | None = None,
    outbox: object | None = None,
    feed: CallFeed | None = None,
    router: Router | None = None,
    webhooks: WebhookAdmin | None = None,
) -> CompatFirst:
    """Build the FastAPI app serving ``control`` (and through it, its PBX and call model).

    Routes: ``GET /health`` (process alive, nothing more), ``GET /ready``
    (200 when AMI is logged in and Asterisk booted, 503 otherwise; the
    details only for the ``state`` right, :func:`readiness`), ``GET
    /metrics`` (Prometheus), ``/docs``, ``/redoc``, ``/openapi.json`` (the
    ``/v1`` description), ``/v1`` (:mod:`salara.api.v1` over ``control`` and
    ``hub``), and the compat endpoint (GET/POST on any other path). Every
    route but ``/health`` needs authentication (:mod:`salara.api.security`);
    ``/metrics`` and the description need the ``state`` right. ``outbox`` is
    the event store whose ``recovered_from`` ``/ready`` shows (default:
    ``metrics.sources.outbox``). Without ``hub`` or ``metrics`` (tests),
    fresh ones are made (not fed by AMI). ``/ui`` is the web console
    (:mod:`salara.api.ui`; ``feed`` wakes its live calls, default one not
    fed by AMI); ``router`` is the routing whose decisions
    ``/v1/routing/decisions`` lists (default ``metrics.sources.router``);
    ``webhooks`` serves ``/v1/webhooks`` and ``/v1/event-log`` (None: 503).
    The session cookie of the console authenticates ``/ui``, the
    documentation and ``/v1``, never the compat endpoint
    (:mod:`salara.api.security.browser`).
    """
    config = control.config
    hub = hub if hub is not None else EventHub()
    metrics = metrics if metrics is not None else Metrics(Sources(ami=control.pbx.ami, control=control, hub=hub))
    store = outbox if outbox is not None else metrics.sources.outbox
    app = CompatFirst(
        title="salara",
        version=salara.__version__,
        description="Asterisk call control for CRMs: `/v1` (calls as resources, states, messages, live events). "
        "The compat API of the old module answers on every other path and is not described here.",
        docs_url=None,  # served below, behind the state right
        redoc_url=None,
        openapi_url=None,
    )
    app.serve_compat(control)  # ahead of FastAPI, through the middleware below (salara.api.compat.dispatch)
    guard = Security(config)
    sessions = Sessions()
    security.install(app, guard, browser=BrowserGate(guard, sessions))
    if config.general.answers == "module":  # every compat error as the old module's code sent it
        app.add_middleware(ModuleErrors)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: refused requests are counted too
    v1.install_error_handlers(app)
    install_openapi(app)  # the document's security, ids, errors, examples, webhooks (salara.api.openapi)
    admin = [Depends(security.require("admin"))]
    state = [Depends(security.require("state"))]

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """The process is alive (open to every client; says nothing else)."""
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["operations"],
        responses={503: {"description": "A PBX's AMI not logged in or not booted"}},
    )
    async def ready(request: Request) -> JSONResponse:
        """``{"status": "ready"}`` (200) or ``{"status": "unready"}`` (503); the ``state`` right sees the details."""
        body = readiness(control, store, detailed="state" in security.principal(request).rights)
        return JSONResponse(body, 200 if body["status"] == "ready" else 503)

    @app.get(OPENAPI_PATH, include_in_schema=False, dependencies=state)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=state)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_PATH,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the validator's site
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False, dependencies=state)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False, dependencies=state)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=OPENAPI_PATH,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )

    tracker = control.tracker

    @app.get("/v1/tracked-calls", tags=["operations"], dependencies=admin)
    async def tracked_calls() -> list[dict[str, object]]:
        """Calls tracked for events: placed (make call) or routed by salara."""
        return [
            {
                "linkedid": call.linkedid,
                "caller": call.caller,
                "exten": call.exten,
                "source": call.source,
                "channels": len(call.channels),
            }
            for call in tracker.calls.values()
        ]

    @app.delete(
        "/v1/tracked-calls/{linkedid}",
        tags=["operations"],
        dependencies=admin,
        responses={404: {"model": v1.ErrorBody, "description": "No such tracked call"}},
    )
    async def forget_tracked_call(linkedid: str) -> JSONResponse:
        """Stop tracking a call (its later events count as untracked)."""
        if not tracker.forget(linkedid):
            return JSONResponse({"error": "not_found", "message": "no such tracked call"}, 404)
        return JSONResponse({"forgotten": linkedid})

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
        dependencies=state,
    )
    async def metrics_endpoint() -> Response:
        """salara's metrics in the Prometheus text format (see :mod:`salara.metrics`)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    decisions = router if router is not None else metrics.sources.router
    app.include_router(
        v1.create_router(control, hub, access=security.TokenAccess(), decisions=decisions, webhooks=webhooks)
    )
    # Its routes as they are, so the compat dispatch (which reads the app's route paths) leaves /ui alone.
    app.router.routes.extend(ui_router(control, metrics, sessions, feed if feed is not None else CallFeed()).routes)

    # The compat endpoint answers on any path, so it is registered last.
    @app.api_route(COMPAT_PATH, methods=["GET", "POST"], include_in_schema=False)
    async def compat_endpoint(request: Request) -> Response:
        return await compat.handle(request, control)

    return app


OPENAPI_PATH = "/openapi.json"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
VENDOR = "/ui/static/vendor"
"""Swagger UI and ReDoc, shipped in the package (``salara/api/ui/static/vendor/VENDORED.md``)."""


def readiness(control: CallControl, outbox: object | None, *, detailed: bool) -> dict[str, object]:
    """The body of ``GET /ready``: ``{"status": "ready" | "unready"}``, and with ``detailed`` what stands behind it.

    Ready while every PBX's AMI is logged in. Detailed: ``"reason"`` (why
    unready, text), ``"role"`` (``leader`` or ``follower``:
    :mod:`salara.nodes`; one node on SQLite leads), ``"ami": {"host": str,
    "port": int, "last_error": str | None}`` (the ``default`` PBX's),
    ``"pbxs": {name: {"up": bool, "host", "port", "last_error"}}`` (every
    PBX, ``default`` first) and, when a store is known, ``"outbox":
    {"recovered_from": str | None}``: the path a damaged store file was moved
    to when salara started (read with ``getattr``: a store that does not
    report it shows None). Nothing is raised.
    """
    sites = list(control.sites)
    down = [site for site in sites if not site.ami.ready]
    body: dict[str, object] = {"status": "unready" if down else "ready"}
    if not detailed:
        return body
    if down:
        first = down[0]
        reason = first.ami.last_error or "AMI not connected"
        body["reason"] = reason if first is control.sites.default else f"PBX {first.name}: {reason}"
    body["role"] = control.role()
    settings = control.config.ami
    body["ami"] = {"host": settings.host, "port": settings.port, "last_error": control.pbx.ami.last_error}
    body["pbxs"] = {
        site.name: {
            "up": site.ami.ready,
            "host": site.section.host,
            "port": site.section.port,
            "last_error": site.ami.last_error,
        }
        for site in sites
    }
    if outbox is not None:
        recovered = getattr(outbox, "recovered_from", None)
        body["outbox"] = {"recovered_from": None if recovered is None else str(recovered)}
    return body
