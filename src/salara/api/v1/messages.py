"""``/v1/messages``: send a SIP MESSAGE to an operator."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from salara.api.v1.context import RouteContext
from salara.api.v1.errors import AMI_ERRORS, CONFLICT
from salara.api.v1.fieldtypes import PBX_PATTERN
from salara.api.v1.models import MessageCreate, MessageResult


def add_routes(router: APIRouter, ctx: RouteContext) -> None:
    """Add ``POST /v1/messages`` to ``router``."""
    control = ctx.control

    @router.post(
        "/messages",
        tags=["messages"],
        operation_id="sendMessage",
        response_model=MessageResult,
        responses={**CONFLICT, **AMI_ERRORS},
    )
    async def send_message(
        request: Request,
        body: MessageCreate,
        pbx: Annotated[
            str | None, Query(pattern=PBX_PATTERN, description="The PBX, as the body's `pbx` may name it.")
        ] = None,
    ) -> MessageResult:
        """Send a SIP MESSAGE to `to`'s endpoint, shown as from `from`, and say whether Asterisk took it.

        Follows the compat API's rules: `to`'s extension state must be good,
        else 409 `operator_unavailable`. Asterisk: `ExtensionState`, then
        `MessageSend`; `accepted` false (with Asterisk's reason) when it refused.
        """
        context = ctx.default_context(body.context)
        ctx.authorize(request, "message", context, body.to)
        pbx = ctx.pbx(body.pbx, pbx)
        ctx.require_ami(context, pbx)
        reason = await ctx.run(control.message(body.to, body.from_, body.text, context, pbx))
        return MessageResult(accepted=reason is None, reason=reason)
