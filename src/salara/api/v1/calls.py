"""``/v1/calls``: place a call, list and read calls, hang one up, transfer one.

Calls are grouped by Linkedid (:attr:`CallControl.registry`); a call salara
places gets its id as ChannelId. Errors: :mod:`salara.api.v1.errors`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from salara.api.v1.context import RouteContext
from salara.api.v1.errors import AMI_ERRORS, CONFLICT, NOT_FOUND, ApiError
from salara.api.v1.fieldtypes import CALL_ID_PATTERN, PBX_PATTERN
from salara.api.v1.models import CallCreate, CallList, CallView, TransferCreate, TransferView, call_view
from salara.control import PlaceCall
from salara.fields import variable_problems

CALL_ID = Annotated[str, Path(pattern=CALL_ID_PATTERN, description="The call's id (its Linkedid).")]


def add_routes(router: APIRouter, ctx: RouteContext) -> None:
    """Add the call routes to ``router``, in this order: POST, GET list, GET one, DELETE, POST transfer."""
    control, access, config = ctx.control, ctx.access, ctx.config

    @router.post(
        "/calls",
        tags=["calls"],
        operation_id="placeCall",
        status_code=201,
        response_model=CallView,
        responses={
            201: {
                "description": "The call was placed (or, for a repeated Idempotency-Key, had been).",
                "headers": {
                    "Location": {"description": "The call's URL", "schema": {"type": "string"}, "required": True}
                },
            },
            **CONFLICT,
            **AMI_ERRORS,
        },
    )
    async def place_call(
        request: Request,
        response: Response,
        body: CallCreate,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                max_length=255,
                pattern=r"^[\x21-\x7e]+$",
                description="The same key (with the same request, from the same token) within 24 hours returns "
                "the call placed first instead of placing another, without counting against the token's rate.",
            ),
        ] = None,
        pbx: Annotated[
            str | None, Query(pattern=PBX_PATTERN, description="The PBX, as the body's `pbx` may name it.")
        ] = None,
    ) -> CallView:
        """Place a call: ring `from`'s device, then dial `to` in `context`.

        Follows the compat API's rules: `from`'s extension state must be good,
        else 409 `operator_unavailable` and nothing is placed. Answers 201 with
        the call (state `dialing`) and its `Location`; its outcome is known
        from `GET /v1/calls/{id}` once it ended, and from its `call.ended`
        lifecycle event (which, like every lifecycle event of the call,
        carries `client_state`). Asterisk: `ExtensionState`, then `Originate`
        (Async, ChannelId = the call's id).
        """
        refused = variable_problems(body.variables, config.api.variable_prefix)
        if refused:
            problem = f"must start with {config.api.variable_prefix!r} ([api] variable_prefix), not with '_'"
            details = [
                {"loc": ["body", "variables", name], "msg": problem, "type": "variable_prefix"} for name in refused
            ]
            message = f"invalid request: variables {', '.join(refused)} {problem}"
            raise ApiError(422, "validation_failed", message, details)
        context = ctx.default_context(body.context)
        ctx.authorize(request, "call", context, body.to, spend=False)  # the rate only for a new call
        pbx = ctx.pbx(body.pbx, pbx)
        ctx.require_ami(context, pbx)
        owner = access.owner(request)
        wanted = PlaceCall(
            body.from_,
            body.to,
            context,
            body.caller_id_name,
            dict(body.variables),
            body.timeout_s,
            owner=owner,
            client_state=body.client_state,
            record=body.record,
            pbx=pbx,
        )
        call, replayed = await ctx.run(
            control.place(wanted, idempotency_key, owner=owner, admit=lambda: access.spend(request, "call"))
        )
        response.headers["Location"] = f"/v1/calls/{call.id}"
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return call_view(call)

    @router.get(
        "/calls", tags=["calls"], operation_id="listCalls", response_model=CallList, responses={503: AMI_ERRORS[503]}
    )
    async def list_calls(request: Request) -> CallList:
        """The active calls the token sees: live channels grouped by Linkedid, oldest call first.

        A token sees the calls it placed and those with a channel in one of
        its contexts; `admin` sees every call. Kept from AMI events
        (Newchannel, Newstate, NewCallerid, NewConnectedLine, Hangup) and
        resynchronised with `CoreShowChannels` after every AMI (re)connect.
        503 while AMI is not connected.
        """
        ctx.authorize(request, "state", None, None)
        ctx.require_ami()
        return CallList(calls=[call_view(call) for call in control.calls(access.viewer(request))])

    @router.get(
        "/calls/{call_id}",
        tags=["calls"],
        operation_id="getCall",
        response_model=CallView,
        responses={**NOT_FOUND, 503: AMI_ERRORS[503]},
    )
    async def get_call(request: Request, call_id: CALL_ID) -> CallView:
        """One live or recently ended call (ended ones are kept an hour, the last 1000).

        Once ended, `outcome` says how: answered, busy, no_answer, failed
        (or unknown), with Asterisk's reasons (Dial status, Hangup cause). For
        a call salara placed that is its called side's outcome; how the
        operator's leg went (OriginateResponse Reason) is `outcome.operator`.
        """
        ctx.authorize(request, "state", None, None)
        call = ctx.lookup(call_id, request)
        if call.ended_at is None:
            ctx.require_ami(pbx=control.sites.of_call(call.id).name)  # only as good as its PBX's AMI link
        return call_view(call)

    @router.delete(
        "/calls/{call_id}",
        tags=["calls"],
        operation_id="hangUpCall",
        status_code=204,
        response_class=Response,
        responses={
            204: {"description": "Hangup requested for every live channel of the call."},
            **NOT_FOUND,
            **CONFLICT,
            **AMI_ERRORS,
        },
    )
    async def hang_up(request: Request, call_id: CALL_ID) -> Response:
        """Hang up a call: AMI `Hangup` (cause 16) of each of its live channels.

        409 `call_ended` when it has ended already.
        """
        ctx.authorize(request, "call", None, None)
        ctx.lookup(call_id, request)
        ctx.require_ami(pbx=control.sites.of_call(call_id).name)
        await ctx.run(control.hangup(call_id, access.viewer(request)))
        return Response(status_code=204)

    @router.post(
        "/calls/{call_id}/transfer",
        tags=["calls"],
        operation_id="transferCall",
        status_code=202,
        response_model=TransferView,
        responses={**NOT_FOUND, **CONFLICT, **AMI_ERRORS},
    )
    async def transfer(request: Request, call_id: CALL_ID, body: TransferCreate) -> TransferView:
        """Send a call elsewhere (blind transfer): AMI `Redirect` of one of its channels to `to@context`.

        The other side of a bridge hangs up. 409 `transfer_refused` with
        Asterisk's reason when it would not redirect.
        """
        context = ctx.default_context(body.context)
        ctx.authorize(request, "call", context, body.to)
        ctx.lookup(call_id, request)
        ctx.require_ami(pbx=control.sites.of_call(call_id).name)
        channel = await ctx.run(control.transfer(call_id, body.to, context, body.channel, access.viewer(request)))
        return TransferView(id=call_id, channel=channel, to=body.to, context=context)
