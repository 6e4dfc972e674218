"""The ``/v1`` router: every resource's routes on one :class:`~fastapi.APIRouter`, then the catch-all.

Routes are added in this order (their order in the OpenAPI document):
calls (:mod:`~salara.api.v1.calls`), messages (:mod:`~salara.api.v1.messages`),
states (:mod:`~salara.api.v1.states`), live events (:mod:`~salara.api.v1.events`), routing decisions
(:mod:`~salara.api.v1.routing`);
last, anything else under ``/v1`` answers 404 or 405 in the ``/v1`` error shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from salara.api.v1 import calls, deliveries, events, messages, recordings, routing, states
from salara.api.v1.access import Access, OpenAccess
from salara.api.v1.context import RouteContext
from salara.api.v1.errors import COMMON_ERRORS, ApiError, V1Route
from salara.control import CallControl
from salara.crm.admin import WebhookAdmin
from salara.events.hub import EventHub


def create_router(
    control: CallControl,
    hub: EventHub,
    *,
    access: Access | None = None,
    dependencies: Sequence[Any] = (),
    decisions: routing.RoutingSource | None = None,
    webhooks: WebhookAdmin | None = None,
) -> APIRouter:
    """The ``/v1`` routes over ``control`` and ``hub``.

    ``access.authorize`` is called first in every route (:class:`Access`;
    default :class:`OpenAccess`); ``dependencies`` apply to every route
    (e.g. ``Depends(...)`` of an access check); ``decisions`` is the router whose journal
    ``GET /v1/routing/decisions`` reads (None: it lists none).
    """
    router = APIRouter(prefix="/v1", responses=COMMON_ERRORS, dependencies=list(dependencies), route_class=V1Route)
    ctx = RouteContext(control, hub, access if access is not None else OpenAccess())
    for resource in (calls, messages, states, events, recordings):
        resource.add_routes(router, ctx)
    routing.add_routes(router, ctx, decisions)
    deliveries.add_routes(router, ctx, webhooks)

    async def unknown(request: Request) -> Response:
        """Anything else under /v1, and /v1 itself: 405 for a known path with another method, else 404."""
        allowed: set[str] = set()
        for route in router.routes:
            if (
                isinstance(route, APIRoute)
                and route.endpoint is not unknown
                and route.path_regex.match(request.url.path)
            ):
                allowed |= route.methods or set()
        if allowed:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here",
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        raise ApiError(404, "not_found", f"no such resource: {request.url.path}")

    for path in ("", "/{rest:path}"):  # "": /v1 itself is reserved too, never the compat endpoint
        router.add_api_route(
            path, unknown, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False
        )
    return router
