"""The HTTP application: health endpoints, then the compat endpoint on every other path."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

import salara
from salara.api import compat, security
from salara.auth import Security
from salara.service import Telephony


def create_app(telephony: Telephony) -> FastAPI:
    """Build the FastAPI app serving ``telephony``.

    Routes: ``GET /health`` (process alive), ``GET /ready`` (AMI logged in
    and Asterisk booted; 503 otherwise), and the compat endpoint (GET/POST on
    any other path). Every route but ``/health`` needs authentication
    (:mod:`salara.api.security`).
    """
    app = FastAPI(title="salara", version=salara.__version__)
    security.install(app, Security(telephony.config))
    admin = [Depends(security.require("admin"))]

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    async def ready() -> JSONResponse:
        ami = telephony.ami
        if ami.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unready", "reason": ami.last_error or "AMI not connected"}, 503)

    tracker = telephony.tracker

    @app.get("/v1/tracked-calls", tags=["operations"], dependencies=admin)
    async def tracked_calls() -> list[dict[str, object]]:
        """Calls tracked for events: placed (make call) or routed by salara."""
        calls = tracker.calls.values() if tracker is not None else ()
        return [
            {
                "linkedid": call.linkedid,
                "caller": call.caller,
                "exten": call.exten,
                "source": call.source,
                "channels": len(call.channels),
            }
            for call in calls
        ]

    @app.delete("/v1/tracked-calls/{linkedid}", tags=["operations"], dependencies=admin)
    async def forget_tracked_call(linkedid: str) -> JSONResponse:
        """Stop tracking a call (its later events count as untracked)."""
        if tracker is None or not tracker.forget(linkedid):
            return JSONResponse({"error": "not_found", "message": "no such tracked call"}, 404)
        return JSONResponse({"forgotten": linkedid})

    # The compat endpoint answers on any path, so it is registered last.
    @app.api_route("/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def compat_endpoint(request: Request) -> JSONResponse:
        return await compat.handle(request, telephony)

    return app
