"""``GET /v1/events``: salara's call events as they happen, as Server-Sent Events."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from salara.api.v1.context import RouteContext
from salara.api.v1.errors import ApiError, error_response
from salara.api.v1.fieldtypes import CALL_ID_PATTERN, EVENT_TYPES_PATTERN
from salara.api.v1.stream import EventStreamResponse
from salara.events.hub import EVENT_TYPES, TooManySubscribers


def add_routes(router: APIRouter, ctx: RouteContext) -> None:
    """Add ``GET /v1/events`` to ``router``."""
    access, hub = ctx.access, ctx.hub

    @router.get(
        "/events",
        tags=["events"],
        operation_id="streamEvents",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: `id`, `event` (the type) and `data` (one JSON object: the "
                "event's extended webhook body, described under `webhooks`); a `: heartbeat` comment "
                "every 15 s; a final `event: dropped` if the client fell behind.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            503: error_response("Too many live event streams are open (in all, or of this token)."),
        },
    )
    async def live_events(
        request: Request,
        event_types: Annotated[
            str | None,
            Query(
                alias="type",
                max_length=200,
                pattern=EVENT_TYPES_PATTERN,
                description="Comma-separated event types to receive: " + ", ".join(EVENT_TYPES) + " (default all).",
            ),
        ] = None,
        call: Annotated[str | None, Query(pattern=CALL_ID_PATTERN, description="Only this call's events.")] = None,
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", max_length=64, pattern=r"^[0-9A-Za-z_\-]+$")
        ] = None,
    ) -> StreamingResponse:
        """Salara's call events as they happen (the same events and ids as the webhooks), as Server-Sent Events.

        Which events exist follows the [event] modes. A reconnecting client
        sending `Last-Event-ID` first gets what it missed, if among the last
        1000 events. A client that falls 1000 events behind, or whose stream
        cannot be written for 30 s (it stopped reading), is dropped. At most
        32 streams at once, 8 per token. A token gets the events of the calls
        it sees (those it placed, those in its contexts; all with `admin`).
        """
        ctx.authorize(request, "state", None, None)
        types = event_types.split(",") if event_types else None
        viewer = access.viewer(request)
        visible = None if viewer.sees_all else functools.partial(ctx.control.sees_call, viewer)
        try:
            subscription = hub.subscribe(types, call, last_event_id, owner=access.owner(request), visible=visible)
        except TooManySubscribers as exc:
            raise ApiError(503, "too_many_subscribers", str(exc), headers={"Retry-After": "5"}) from None
        return EventStreamResponse(
            hub.stream(subscription),
            send_timeout_s=hub.send_timeout_s,
            on_stall=lambda: hub.stalled(subscription),
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
