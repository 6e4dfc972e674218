"""``/v1/webhooks`` (the event endpoints, their deliveries, retry and replay) and ``/v1/event-log``.

Every route needs the ``admin`` right but the event log, which needs
``state``. The work is :class:`~salara.crm.admin.WebhookAdmin`'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from salara.api.v1.context import RouteContext
from salara.api.v1.errors import NOT_FOUND, ApiError
from salara.config.webhooks import WEBHOOK_NAME, Webhook
from salara.crm.admin import WebhookAdmin
from salara.errors import ConfigError, NotFound
from salara.eventtypes import EVENT_TYPES

NAME_PATTERN = f"^{WEBHOOK_NAME.pattern}$"
EVENT_ID_PATTERN = r"^[0-9a-f]{32}$"
Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64, description="default, or a [webhook NAME].")]


class WebhookSettings(BaseModel):
    """A ``[webhook NAME]`` section as ``PUT /v1/webhooks/{name}`` takes it."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http:// or https:// URL the events are POSTed to.")
    events: list[Literal[EVENT_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=len(EVENT_TYPES),
        description="Event types it gets; empty: all its payload has.",
    )
    payload: Literal["compat", "extended"] = "extended"
    secret: str = Field("", max_length=256, description="One secret, or two separated by a space during a rotation.")
    timeout: float | None = Field(None, gt=0, le=300, description="Seconds per POST; unset: [general] curlopt_timeout.")


class Replay(BaseModel):
    """What ``POST /v1/webhooks/{name}/replay`` sends again: every event stored since ``since``."""

    model_config = ConfigDict(extra="forbid")

    since: datetime


def _admin(admin: WebhookAdmin | None) -> WebhookAdmin:
    if admin is None:
        raise ApiError(503, "no_store", "salara runs without its event store here")
    return admin


def add_routes(router: APIRouter, ctx: RouteContext, admin: WebhookAdmin | None) -> None:
    """Add the webhook and event-log routes to ``router``."""

    def guard(request: Request, right: Literal["admin", "state"] = "admin") -> WebhookAdmin:
        ctx.authorize(request, right, None, None)
        return _admin(admin)

    def found(call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except ConfigError as exc:
            raise ApiError(422, "validation_failed", str(exc)) from None

    @router.get("/webhooks", tags=["webhooks"], operation_id="listWebhooks")
    async def list_webhooks(request: Request) -> dict[str, Any]:
        """The event endpoints: ``default`` (``dest_url_event``) and each ``[webhook NAME]``, state and counts."""
        return {"webhooks": guard(request).endpoints()}

    @router.get("/webhooks/{name}", tags=["webhooks"], operation_id="getWebhook", responses=NOT_FOUND)
    async def get_webhook(request: Request, name: Name) -> dict[str, Any]:
        """One endpoint: settings (URL masked, no secret), whether a 410 disabled it, counts by state."""
        return found(guard(request).endpoint, name)  # type: ignore[no-any-return]

    @router.put("/webhooks/{name}", tags=["webhooks"], operation_id="putWebhook")
    async def put_webhook(request: Request, name: Name, body: WebhookSettings) -> dict[str, Any]:
        """Add or change ``[webhook NAME]``: written to the config file atomically, then reloaded."""
        service = guard(request)
        try:
            webhook = Webhook.model_validate({**body.model_dump(exclude={"events"}), "events": tuple(body.events)})
        except ValueError as exc:
            raise ApiError(422, "validation_failed", str(exc).splitlines()[-1]) from None
        return found(service.put, name, webhook)  # type: ignore[no-any-return]

    @router.delete(
        "/webhooks/{name}", tags=["webhooks"], operation_id="deleteWebhook", status_code=204, responses=NOT_FOUND
    )
    async def delete_webhook(request: Request, name: Name) -> Response:
        """Remove ``[webhook NAME]`` from the config file, then reload (its stored deliveries stay listed)."""
        found(guard(request).delete, name)
        return Response(status_code=204)

    @router.post("/webhooks/{name}/enable", tags=["webhooks"], operation_id="enableWebhook", responses=NOT_FOUND)
    async def enable_webhook(request: Request, name: Name) -> dict[str, Any]:
        """Send to an endpoint again after its ``410 Gone`` disabled it; its waiting events go on in order."""
        return found(guard(request).enable, name)  # type: ignore[no-any-return]

    @router.get("/webhooks/{name}/deliveries", tags=["webhooks"], operation_id="listDeliveries", responses=NOT_FOUND)
    async def list_deliveries(
        request: Request,
        name: Name,
        status: Annotated[
            Literal["pending", "ready", "sending", "delivered", "dead"] | None, Query(description="Only this state.")
        ] = None,
        call_id: Annotated[str | None, Query(max_length=160)] = None,
        type: Annotated[Literal[EVENT_TYPES] | None, Query(description="Only this event type.")] = None,  # type: ignore[valid-type]
        since: Annotated[datetime | None, Query(description="Stored at or after (ISO 8601).")] = None,
        after: Annotated[
            int, Query(ge=0, le=2**63 - 1, description="The page after this seq (the last page's next).")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """An endpoint's deliveries, oldest first, each with every attempt (status, latency, first bytes)."""
        return found(  # type: ignore[no-any-return]
            guard(request).deliveries_of,
            name,
            status=status,
            call_id=call_id,
            event_type=type,
            since=since.timestamp() if since is not None else None,
            after=after,
            limit=limit,
        )

    @router.post(
        "/webhooks/{name}/deliveries/{event_id}/retry",
        tags=["webhooks"],
        operation_id="retryDelivery",
        responses=NOT_FOUND,
    )
    async def retry_delivery(
        request: Request, name: Name, event_id: Annotated[str, Path(pattern=EVENT_ID_PATTERN)]
    ) -> dict[str, Any]:
        """Send one event to the endpoint again, with its original ``webhook-id``."""
        return {"queued": found(guard(request).retry, name, event_id)}

    @router.post("/webhooks/{name}/replay", tags=["webhooks"], operation_id="replayDeliveries", responses=NOT_FOUND)
    async def replay(request: Request, name: Name, body: Annotated[Replay, Body()]) -> dict[str, Any]:
        """Send every event stored since a time to the endpoint again (delivered too), in per-call order."""
        return {"queued": found(guard(request).replay, name, body.since.timestamp())}

    @router.get("/event-log", tags=["events"], operation_id="readEventLog")
    async def event_log(
        request: Request,
        after: Annotated[
            int, Query(ge=0, le=2**63 - 1, description="Events with a sequence number over this one.")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Stored events, oldest first, each with its sequence number; page with ``after=<next>``."""
        return guard(request, "state").event_log(after, limit)
