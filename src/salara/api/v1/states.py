"""``/v1`` states: an extension's (hint) state, a PJSIP endpoint, a live channel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from salara import fields
from salara.api.v1.context import RouteContext
from salara.api.v1.errors import AMI_ERRORS, NOT_FOUND, ApiError
from salara.api.v1.fieldtypes import CONTEXT_PATTERN, ENDPOINT_PATTERN, EXTENSION_PATTERN, PBX_PATTERN
from salara.api.v1.models import EndpointView, ExtensionView
from salara.pbx import ChannelInfo


def add_routes(router: APIRouter, ctx: RouteContext) -> None:
    """Add the state routes to ``router``, in this order: extension, endpoint, channel."""
    control = ctx.control

    @router.get(
        "/extensions/{exten}",
        tags=["states"],
        operation_id="getExtensionState",
        response_model=ExtensionView,
        responses={**NOT_FOUND, **AMI_ERRORS},
    )
    async def extension_state(
        request: Request,
        exten: Annotated[str, Path(max_length=fields.MAX_EXTENSION, pattern=EXTENSION_PATTERN)],
        context: Annotated[
            str | None, Query(max_length=fields.MAX_CONTEXT, pattern=CONTEXT_PATTERN, description="Default context.")
        ] = None,
        pbx: Annotated[str | None, Query(pattern=PBX_PATTERN, description="The PBX (default: by context).")] = None,
    ) -> ExtensionView:
        """An extension's (hint) state: AMI `ExtensionState`. 404 without such extension or hint.

        Read on `pbx`, else on the PBX whose `contexts` list the context, else on `default`.
        """
        ctx.authorize(request, "state", None, None)
        context = ctx.default_context(context)
        ctx.require_ami(context, pbx)
        info = await ctx.run(control.extension(exten, context, pbx))
        view = ExtensionView.model_validate(info)
        view.pbx = control.sites.serving(context, pbx).name
        return view

    @router.get(
        "/endpoints/{name}",
        tags=["states"],
        operation_id="getEndpoint",
        response_model=EndpointView,
        responses={**NOT_FOUND, **AMI_ERRORS},
    )
    async def endpoint_state(
        request: Request,
        name: Annotated[str, Path(max_length=fields.MAX_EXTENSION, pattern=ENDPOINT_PATTERN)],
        pbx: Annotated[str | None, Query(pattern=PBX_PATTERN, description="The PBX (default: `default`).")] = None,
    ) -> EndpointView:
        """A PJSIP endpoint: registered contacts (URI, user agent), reachability with round-trip time,
        device state. AMI `PJSIPShowEndpoint` on `pbx`. 404 for an unknown endpoint."""
        ctx.authorize(request, "state", None, None)
        ctx.require_ami(None, pbx)
        return EndpointView.model_validate(await ctx.run(control.sites.serving("", pbx).pbx.endpoint(name)))

    @router.get(
        "/channels/{tech}/{resource:path}",
        tags=["states"],
        operation_id="getChannel",
        response_model=ChannelInfo,  # control's record, served as it is
        responses={**NOT_FOUND, **AMI_ERRORS},
    )
    async def channel_state(
        request: Request,
        tech: Annotated[
            str, Path(max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="Technology, e.g. PJSIP.")
        ],
        resource: Annotated[
            str,
            Path(
                max_length=fields.MAX_CHANNEL - 33,
                pattern=r"^[!-~]+$",
                description="The rest of the channel name, e.g. 8001-00000004 (percent-encode ?, # and %).",
            ),
        ],
        pbx: Annotated[str | None, Query(pattern=PBX_PATTERN, description="The PBX (default: `default`).")] = None,
    ) -> ChannelInfo:
        """A live channel's state by its name (`GET /v1/channels/PJSIP/8001-00000004`): AMI `Status`.

        404 when Asterisk has no such channel.
        """
        ctx.authorize(request, "state", None, None)
        name = f"{tech}/{resource}"
        try:
            fields.channel("channel", name)
        except fields.FieldError as exc:
            raise ApiError(422, "validation_failed", str(exc)) from None
        ctx.require_ami(None, pbx)
        return await ctx.run(control.sites.serving("", pbx).pbx.channel(name))
