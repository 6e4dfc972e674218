"""``/v1``: calls as resources, states, messages and live events, described in OpenAPI.

Every route is on one :class:`~fastapi.APIRouter` built by
:func:`create_router`; access control comes in through its ``access``
(:class:`Access`): ``authorize`` is called first in every route with the
right the route needs (``call``, ``message`` or ``state``) and, for calls,
messages and transfers, the context and the number dialled; ``spend``
counts a call or message against the client's rate (for ``POST /v1/calls``
only when a new call is placed, never for an idempotent replay); ``owner``
names the client, whose idempotency keys and live streams are its own.

Every error answers one JSON shape, :class:`ErrorBody`:
``{"error": "<stable id>", "message": "<text>", "details": {...} | [...] | null}``.
404 no such call/extension/endpoint/channel; 409 the request clashes with
the state of things (operator not available, call ended, idempotency key
reused, transfer refused); 422 a request that does not validate (details:
one entry per problem); 503 AMI not connected (answered at once, nothing
sent) or too many live event streams; 502 Asterisk refused an action
salara expected it to take; 504 Asterisk did not answer in time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Protocol, TypeVar

from fastapi import APIRouter, FastAPI, Header, Path, Query, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from salara import fields
from salara.api.security import ABORT_EXTENSION
from salara.channels import Call, Channel, originate_reason_text
from salara.control import (
    CallControl,
    ChannelInfo,
    ControlError,
    NotFound,
    PlaceCall,
    Unprocessable,
    utc,
    variable_problems,
)
from salara.errors import AMIActionError, AMIError, AMIUnavailable, LocalProtocolError
from salara.live import EVENT_TYPES, EventHub, TooManySubscribers
from salara.states import channel_state_name

log = logging.getLogger(__name__)

T = TypeVar("T")

Right = Literal["call", "message", "state"]


class Access(Protocol):
    """Access control as ``/v1`` sees it; each method returns, or raises to refuse (the raiser answers)."""

    def authorize(self, request: Request, right: Right, context: str | None, number: str | None) -> None:
        """May the client do ``right`` (in ``context``, to ``number``)? Spends nothing."""

    def spend(self, request: Request, right: Right) -> None:
        """Count one call or message against the client's rate."""

    def owner(self, request: Request) -> str:
        """Who the client is (a token's name): its idempotency keys and live streams are counted as its own."""


class OpenAccess:
    """The access control when none is installed: everything allowed, one owner."""

    def authorize(self, request: Request, right: Right, context: str | None, number: str | None) -> None:
        pass

    def spend(self, request: Request, right: Right) -> None:
        pass

    def owner(self, request: Request) -> str:
        return ""


# -- field types ---------------------------------------------------------------


def _checked(check: Callable[[str, str], str], name: str) -> AfterValidator:
    """Run a :mod:`salara.fields` check after the pattern; its FieldError becomes a 422."""

    def validate(value: str) -> str:
        try:
            return check(name, value)
        except fields.FieldError as exc:
            raise ValueError(exc.reason) from None

    return AfterValidator(validate)


EXTENSION_PATTERN: Final = r"^[0-9A-Za-z*#+][0-9A-Za-z*#+._\-]*$"
CONTEXT_PATTERN: Final = r"^[0-9A-Za-z_\-][0-9A-Za-z_.\-]*$"
CHANNEL_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_]*/[!-~]+$"
"""``Tech/resource``; both parts printable ASCII without spaces."""
ENDPOINT_PATTERN: Final = r"^[0-9A-Za-z_.+\-@]+$"
CALL_ID_PATTERN: Final = r"^[A-Za-z0-9._\-]{1,64}$"
EVENT_TYPES_PATTERN: Final = "^({0})(,({0}))*$".format("|".join(EVENT_TYPES))

Extension = Annotated[
    str,
    Field(min_length=1, max_length=fields.MAX_EXTENSION, pattern=EXTENSION_PATTERN),
    _checked(fields.extension, "extension"),
]
Context = Annotated[
    str,
    Field(min_length=1, max_length=fields.MAX_CONTEXT, pattern=CONTEXT_PATTERN),
    _checked(fields.context, "context"),
]
ChannelName = Annotated[
    str,
    Field(min_length=3, max_length=fields.MAX_CHANNEL, pattern=CHANNEL_PATTERN, examples=["PJSIP/8001-00000004"]),
    _checked(fields.channel, "channel"),
]
CallerIdName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=80,
        pattern=r'^[^\x00-\x1f\x7f"<>\\]+$',
        description="Shown as the caller's name; no quotes, angle brackets, backslashes or control characters.",
        examples=["ACME support"],
    ),
]
VariableName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="Must also start with [api] variable_prefix (default CRM_).",
    ),
]
"""A plain channel variable: no dialplan functions (``FUNC(...)``), which could write files or run commands,
no leading ``_`` (inheritance into every channel of the call); the route also requires ``[api] variable_prefix``."""
VariableValue = Annotated[
    str,
    Field(
        max_length=255,
        pattern=r'^[^\x00-\x1f\x7f,"\\()\[\]]*$',
        description="No commas, quotes, backslashes, parentheses, brackets or control characters "
        "(Asterisk would split the value, or read a function call into it).",
    ),
]
MessageText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=fields.MAX_MESSAGE_BYTES,
        pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]*$",
        description=f"One line (tabs allowed), at most {fields.MAX_MESSAGE_BYTES} UTF-8 bytes.",
    ),
    _checked(fields.message_text, "text"),
]


# -- models ------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every error of ``/v1``."""

    error: str = Field(description="A stable id, e.g. `call_not_found`, `operator_unavailable`, `ami_unavailable`.")
    message: str = Field(description="What went wrong, for people.")
    details: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None, description="More about it: the fields that did not validate (422), Asterisk's own words..."
    )


class CallCreate(BaseModel):
    """A call to place: ``from`` rings first; when it answers, ``to`` is dialled in ``context``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Extension = Field(
        alias="from",
        examples=["8001"],
        description="The operator's extension: their device (<operator_technology>/<from>) rings first. "
        "Its extension state must be in [url] good_status, as for the compat API.",
    )
    to: Extension = Field(description="The number dialled in `context` once `from` answered.", examples=["9001"])
    context: Context | None = Field(
        None, description="Dialplan context; default [general] default_context.", examples=["phones"]
    )
    caller_id_name: CallerIdName | None = Field(None, description="Caller id name; default the `from` number.")
    variables: dict[VariableName, VariableValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Channel variables set on the call (at most 32). Names must start with [api] variable_prefix "
        "(default `CRM_`): Asterisk's own variables (BRIDGE_FEATURES, TRANSFER_CONTEXT...) and inherited ones "
        "(leading `_`) are refused with 422.",
        examples=[{"CRM_ID": "4711"}],
    )
    timeout_s: int | None = Field(
        None, ge=1, le=600, description="Seconds `from` rings before the call fails; default [event] timeout_makecall."
    )


class TransferCreate(BaseModel):
    """Where to send a call (blind transfer)."""

    model_config = ConfigDict(extra="forbid")

    to: Extension = Field(description="Extension the call goes to (priority 1).", examples=["9001"])
    context: Context | None = Field(None, description="Its context; default [general] default_context.")
    channel: ChannelName | None = Field(
        None,
        description="The call's channel to move; default the called side of a call salara placed, "
        "else the call's first channel (the caller).",
    )


class MessageCreate(BaseModel):
    """A SIP MESSAGE to the operator ``to``, from ``from``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: Extension = Field(
        description="The operator's extension (its PJSIP endpoint gets the MESSAGE).", examples=["8001"]
    )
    from_: Extension = Field(alias="from", description="Shown as the sender.", examples=["8002"])
    text: MessageText
    context: Context | None = Field(None, description="Context of `to`'s hint; default [general] default_context.")


class ChannelView(BaseModel):
    """A live channel of a call."""

    name: str
    uniqueid: str
    state: str = Field(description="Asterisk's channel state name: Down, Ring, Ringing, Up, Busy...")
    state_code: int = Field(description="Asterisk's channel state code: 4 Ring, 5 Ringing, 6 Up...")
    caller_number: str | None
    caller_name: str | None
    connected_number: str | None
    connected_name: str | None
    context: str | None
    exten: str | None
    created_at: datetime
    answered_at: datetime | None


OutcomeResult = Literal["answered", "busy", "no_answer", "failed", "unknown"]


class OperatorOutcomeView(BaseModel):
    """How the operator's leg of a call salara placed went (their device rang first)."""

    result: OutcomeResult = Field(description="From the OriginateResponse Reason (4: the operator answered).")
    reason: str
    originate_reason: int | None = Field(
        None, description="0 failure, 1 hung up, 3 no answer (ring timeout), 4 answered, 5 busy, 8 congestion."
    )
    originate_reason_text: str | None = None


class OutcomeView(BaseModel):
    """How a call ended, with the reasons Asterisk gave.

    For a call salara placed, `result` is the called side's: `answered` only
    if it answered, whatever the operator's leg did (that is `operator`).
    """

    result: OutcomeResult
    reason: str = Field(description="Asterisk's reasons in words: Dial status, Hangup cause, OriginateResponse.")
    originate_reason: int | None = Field(
        None,
        description="OriginateResponse Reason of a call salara placed (its operator's leg): 0 failure, 1 hung up, "
        "3 no answer (ring timeout), 4 answered, 5 busy, 8 congestion.",
    )
    originate_reason_text: str | None = None
    hangup_cause: int | None = Field(None, description="Q.850 cause of the Hangup (16 normal clearing, 17 busy...).")
    hangup_cause_text: str | None = Field(None, description="Asterisk's Cause-txt.")
    dial_status: str | None = Field(
        None, description="The call's Dial status when the dialplan ran Dial: ANSWER, BUSY, NOANSWER, CHANUNAVAIL..."
    )
    operator: OperatorOutcomeView | None = Field(None, description="For a call salara placed: the operator's leg.")


class CallView(BaseModel):
    """A call: channels grouped by Linkedid."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="The call's Linkedid (salara chooses it for the calls it places).")
    state: Literal["dialing", "ringing", "up", "ended"] = Field(
        description="`up` once answered (a call salara placed: by its called side; while only the operator "
        "answered it is `ringing`)."
    )
    from_: str | None = Field(alias="from", description="Calling party: the operator, or the first channel's caller.")
    to: str | None = Field(description="Called party: the number dialled, or the first channel's extension.")
    context: str | None
    placed_by_salara: bool = Field(description="Placed through POST /v1/calls.")
    created_at: datetime
    answered_at: datetime | None = Field(
        description="When the call was answered: for a call salara placed, by its called side."
    )
    ended_at: datetime | None
    channels: list[ChannelView] = Field(description="Live channels (none once ended).")
    outcome: OutcomeView | None = Field(description="Set once the call ended.")


class CallList(BaseModel):
    calls: list[CallView]


class TransferView(BaseModel):
    id: str
    channel: str = Field(description="The channel that was redirected.")
    to: str
    context: str


class MessageResult(BaseModel):
    accepted: bool = Field(description="Whether Asterisk accepted the MESSAGE for sending.")
    reason: str | None = Field(None, description="Asterisk's reason when it did not.")


class ExtensionView(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read straight from control's record

    exten: str
    context: str
    hint: str | None = Field(description="The hint's devices, e.g. PJSIP/8001.")
    state: int = Field(description="Extension state code: 0 Idle, 1 InUse, 2 Busy, 4 Unavailable, 8 Ringing...")
    state_text: str
    available: bool = Field(description="Whether the state is in [url] good_status.")


class ContactView(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read straight from control's record

    uri: str
    user_agent: str | None
    status: str = Field(description="Asterisk's qualify status: Reachable, Unreachable, Unknown, NonQualified...")
    rtt_ms: float | None = Field(description="Round-trip time of the last qualify, milliseconds.")
    via: str | None
    expires_at: datetime | None = Field(description="When the registration expires.")


class EndpointView(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read straight from control's record

    name: str
    registered: bool = Field(description="At least one contact is registered.")
    reachability: Literal["reachable", "unreachable", "unknown"]
    rtt_ms: float | None = Field(description="Best round-trip time of a reachable contact, milliseconds.")
    device_state: str | None = Field(description="Asterisk's device state: Not in use, In use, Unavailable...")
    active_channels: int | None
    contacts: list[ContactView]


# -- conversions ---------------------------------------------------------------------


def channel_view(channel: Channel) -> ChannelView:
    return ChannelView(
        name=channel.name,
        uniqueid=channel.uniqueid,
        state=channel_state_name(channel.state),
        state_code=channel.state,
        caller_number=channel.caller_number,
        caller_name=channel.caller_name,
        connected_number=channel.connected_number,
        connected_name=channel.connected_name,
        context=channel.context,
        exten=channel.exten,
        created_at=utc(channel.created_at),
        answered_at=utc(channel.answered_at),
    )


def call_view(call: Call) -> CallView:
    outcome = None
    if call.outcome is not None:
        o = call.outcome
        operator = None
        if o.operator is not None:
            code = o.operator.originate_reason
            operator = OperatorOutcomeView(
                result=o.operator.result,
                reason=o.operator.reason,
                originate_reason=code,
                originate_reason_text=originate_reason_text(code) if code is not None else None,
            )
        outcome = OutcomeView(
            result=o.result,
            reason=o.reason,
            originate_reason=o.originate_reason,
            originate_reason_text=originate_reason_text(o.originate_reason) if o.originate_reason is not None else None,
            hangup_cause=o.hangup_cause,
            hangup_cause_text=o.hangup_cause_text,
            dial_status=o.dial_status,
            operator=operator,
        )
    return CallView(
        id=call.id,
        state=call.state,
        from_=call.from_,
        to=call.to,
        context=call.context,
        placed_by_salara=call.origin is not None,
        created_at=utc(call.created_at),
        answered_at=utc(call.answered_at),
        ended_at=utc(call.ended_at),
        channels=[channel_view(channel) for channel in call.channels.values()],
        outcome=outcome,
    )


# -- the live stream's response -------------------------------------------------------


class StreamStalled(Exception):
    """A write of a stream waited longer than its send timeout: the client stopped reading."""


class EventStreamResponse(StreamingResponse):
    """Server-Sent Events that end when one write waits ``send_timeout_s`` seconds (the client stopped reading).

    A client that stops reading fills the socket, and then every write of the
    stream waits, without end, holding the connection. Here such a stream
    calls ``on_stall`` and drops the connection through the scope extension
    :data:`~salara.api.security.ABORT_EXTENSION` (salara's uvicorn protocol
    offers it); without it, :class:`StreamStalled` ends the response and the
    server closes the connection.
    """

    def __init__(
        self,
        content: Any,
        *,
        send_timeout_s: float,
        on_stall: Callable[[], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, headers=headers, media_type="text/event-stream")
        self.send_timeout_s = send_timeout_s
        self.on_stall = on_stall
        self._abort: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extension = scope.get("extensions", {}).get(ABORT_EXTENSION)
        self._abort = extension.get("abort") if isinstance(extension, dict) else None
        await super().__call__(scope, receive, send)

    async def _send(self, send: Send, message: Message) -> None:
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await send(message)
        except TimeoutError:
            raise StreamStalled(f"no write went through within {self.send_timeout_s:g} s") from None

    async def stream_response(self, send: Send) -> None:
        try:
            await self._send(
                send, {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in self.body_iterator:
                data = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
                await self._send(send, {"type": "http.response.body", "body": data, "more_body": True})
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
        except StreamStalled:
            self.on_stall()
            if self._abort is None:
                raise
            self._abort()
            # The server sees the connection lost and lets this last write through at once.
            async with asyncio.timeout(self.send_timeout_s):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


# -- errors ----------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer of ``/v1`` in the :class:`ErrorBody` shape."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: dict[str, Any] | list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": self.error, "message": self.message, "details": self.details}
        return JSONResponse(body, self.status, headers=self.headers)


def api_error_of(exc: Exception) -> ApiError:
    """The HTTP answer to an error raised by :class:`CallControl` or the AMI client."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, exc.error, exc.message, exc.details or None)
    if isinstance(exc, Unprocessable):
        return ApiError(422, exc.error, exc.message, exc.details or None)
    if isinstance(exc, ControlError):
        return ApiError(409, exc.error, exc.message, exc.details or None)
    if isinstance(exc, AMIUnavailable):
        return ApiError(503, "ami_unavailable", f"Asterisk (AMI) is not connected: {exc}")
    if isinstance(exc, AMIActionError):
        return ApiError(
            502,
            "asterisk_refused",
            f"Asterisk refused {exc.action}: {exc.message}",
            {"action": exc.action, "asterisk": exc.message},
        )
    if isinstance(exc, AMIError):
        return ApiError(504, "asterisk_timeout", str(exc))
    if isinstance(exc, LocalProtocolError):
        return ApiError(422, "validation_failed", str(exc))
    raise TypeError(f"not an API error: {exc!r}")


def validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as plain JSON: where (``loc``), what (``msg``), which rule (``type``)."""
    return [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]


class V1Route(APIRoute):
    """A route of ``/v1``: its validation errors answer in the :class:`ErrorBody` shape."""


def install_error_handlers(app: FastAPI) -> None:
    """Answer ``/v1`` errors (and its validation errors) in the :class:`ErrorBody` shape."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        return api_error_of(exc).response()

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not isinstance(request.scope.get("route"), V1Route):
            return await request_validation_exception_handler(request, exc)
        details = validation_details(exc)
        where = ", ".join(".".join(str(part) for part in d["loc"]) + ": " + d["msg"] for d in details[:5])
        return ApiError(422, "validation_failed", f"invalid request: {where}", details).response()

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not isinstance(request.scope.get("route"), V1Route):
            # Outside /v1 a client speaks the compat API: answer in its shape.
            headers = dict(exc.headers) if exc.headers else None
            return JSONResponse({"result": -2, "text": f"Error: {exc.detail}"}, exc.status_code, headers)
        if exc.status_code == 400:  # FastAPI could not read the body at all (not UTF-8, not JSON)
            return ApiError(422, "validation_failed", f"invalid request: {exc.detail}").response()
        headers = dict(exc.headers) if exc.headers else None
        return ApiError(exc.status_code, "error", str(exc.detail), headers=headers).response()

    for kind in (ApiError, ControlError, AMIError, LocalProtocolError):
        app.add_exception_handler(kind, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


COMMON_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    422: _error("The request does not validate (details: one entry per problem)."),
}
AMI_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    502: _error("Asterisk refused the action."),
    503: _error("Asterisk (AMI) is not connected; nothing was sent."),
    504: _error("Asterisk did not answer in time."),
}
NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: _error("No such resource.")}
CONFLICT: Final[dict[int | str, dict[str, Any]]] = {409: _error("The request clashes with the state of things.")}
CALL_ID = Annotated[str, Path(pattern=CALL_ID_PATTERN, description="The call's id (its Linkedid).")]


# -- the router -------------------------------------------------------------------------


def create_router(
    control: CallControl,
    hub: EventHub,
    *,
    access: Access | None = None,
    dependencies: Sequence[Any] = (),
) -> APIRouter:
    """The ``/v1`` routes over ``control`` and ``hub``.

    ``access.authorize`` is called first in every route (:class:`Access`;
    default :class:`OpenAccess`); ``dependencies`` apply to every route
    (e.g. ``Depends(...)`` of an access check).
    """
    router = APIRouter(prefix="/v1", responses=COMMON_ERRORS, dependencies=list(dependencies), route_class=V1Route)
    config = control.telephony.config
    access = access if access is not None else OpenAccess()

    def authorize(request: Request, right: Right, context: str | None, number: str | None, spend: bool = True) -> None:
        access.authorize(request, right, context, number)
        if spend and right in ("call", "message"):
            access.spend(request, right)

    def default_context(context: str | None) -> str:
        return context or config.general.default_context

    def require_ami() -> None:
        if not control.ami.ready:
            raise ApiError(503, "ami_unavailable", "Asterisk (AMI) is not connected")

    async def run(work: Awaitable[T]) -> T:
        try:
            return await work
        except (ControlError, AMIError, LocalProtocolError) as exc:
            raise api_error_of(exc) from None

    def lookup(call_id: str) -> Call:
        try:
            return control.call(call_id)
        except NotFound as exc:
            raise api_error_of(exc) from None

    @router.post(
        "/calls",
        tags=["calls"],
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
    ) -> CallView:
        """Place a call: ring `from`'s device, then dial `to` in `context`.

        Follows the compat API's rules: `from`'s extension state must be good,
        else 409 `operator_unavailable` and nothing is placed. Answers 201 with
        the call (state `dialing`) and its `Location`; its outcome is known
        from `GET /v1/calls/{id}` once it ended. Asterisk: `ExtensionState`,
        then `Originate` (Async, ChannelId = the call's id).
        """
        refused = variable_problems(body.variables, config.api.variable_prefix)
        if refused:
            problem = f"must start with {config.api.variable_prefix!r} ([api] variable_prefix), not with '_'"
            details = [
                {"loc": ["body", "variables", name], "msg": problem, "type": "variable_prefix"} for name in refused
            ]
            message = f"invalid request: variables {', '.join(refused)} {problem}"
            raise ApiError(422, "validation_failed", message, details)
        context = default_context(body.context)
        authorize(request, "call", context, body.to, spend=False)  # the rate only for a new call
        require_ami()
        wanted = PlaceCall(body.from_, body.to, context, body.caller_id_name, dict(body.variables), body.timeout_s)
        owner = access.owner(request)
        call, replayed = await run(
            control.place(wanted, idempotency_key, owner=owner, admit=lambda: access.spend(request, "call"))
        )
        response.headers["Location"] = f"/v1/calls/{call.id}"
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return call_view(call)

    @router.get("/calls", tags=["calls"], response_model=CallList, responses={503: AMI_ERRORS[503]})
    async def list_calls(request: Request) -> CallList:
        """The active calls: live channels grouped by Linkedid, oldest call first.

        Kept from AMI events (Newchannel, Newstate, NewCallerid,
        NewConnectedLine, Hangup) and resynchronised with `CoreShowChannels`
        after every AMI (re)connect. 503 while AMI is not connected.
        """
        authorize(request, "state", None, None)
        require_ami()
        return CallList(calls=[call_view(call) for call in control.registry.active()])

    @router.get(
        "/calls/{call_id}", tags=["calls"], response_model=CallView, responses={**NOT_FOUND, 503: AMI_ERRORS[503]}
    )
    async def get_call(request: Request, call_id: CALL_ID) -> CallView:
        """One live or recently ended call (ended ones are kept an hour, the last 1000).

        Once ended, `outcome` says how: answered, busy, no_answer, failed
        (or unknown), with Asterisk's reasons (Dial status, Hangup cause). For
        a call salara placed that is its called side's outcome; how the
        operator's leg went (OriginateResponse Reason) is `outcome.operator`.
        """
        authorize(request, "state", None, None)
        call = lookup(call_id)
        if call.ended_at is None:
            require_ami()  # a live call's state is only as good as the AMI link
        return call_view(call)

    @router.delete(
        "/calls/{call_id}",
        tags=["calls"],
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
        authorize(request, "call", None, None)
        lookup(call_id)
        require_ami()
        await run(control.hangup(call_id))
        return Response(status_code=204)

    @router.post(
        "/calls/{call_id}/transfer",
        tags=["calls"],
        status_code=202,
        response_model=TransferView,
        responses={**NOT_FOUND, **CONFLICT, **AMI_ERRORS},
    )
    async def transfer(request: Request, call_id: CALL_ID, body: TransferCreate) -> TransferView:
        """Send a call elsewhere (blind transfer): AMI `Redirect` of one of its channels to `to@context`.

        The other side of a bridge hangs up. 409 `transfer_refused` with
        Asterisk's reason when it would not redirect.
        """
        context = default_context(body.context)
        authorize(request, "call", context, body.to)
        lookup(call_id)
        require_ami()
        channel = await run(control.transfer(call_id, body.to, context, body.channel))
        return TransferView(id=call_id, channel=channel, to=body.to, context=context)

    @router.post("/messages", tags=["messages"], response_model=MessageResult, responses={**CONFLICT, **AMI_ERRORS})
    async def send_message(request: Request, body: MessageCreate) -> MessageResult:
        """Send a SIP MESSAGE to `to`'s endpoint, shown as from `from`, and say whether Asterisk took it.

        Follows the compat API's rules: `to`'s extension state must be good,
        else 409 `operator_unavailable`. Asterisk: `ExtensionState`, then
        `MessageSend`; `accepted` false (with Asterisk's reason) when it refused.
        """
        context = default_context(body.context)
        authorize(request, "message", context, body.to)
        require_ami()
        reason = await run(control.message(body.to, body.from_, body.text, context))
        return MessageResult(accepted=reason is None, reason=reason)

    @router.get(
        "/extensions/{exten}",
        tags=["states"],
        response_model=ExtensionView,
        responses={**NOT_FOUND, **AMI_ERRORS},
    )
    async def extension_state(
        request: Request,
        exten: Annotated[str, Path(max_length=fields.MAX_EXTENSION, pattern=EXTENSION_PATTERN)],
        context: Annotated[
            str | None, Query(max_length=fields.MAX_CONTEXT, pattern=CONTEXT_PATTERN, description="Default context.")
        ] = None,
    ) -> ExtensionView:
        """An extension's (hint) state: AMI `ExtensionState`. 404 without such extension or hint."""
        authorize(request, "state", None, None)
        require_ami()
        info = await run(control.extension(exten, default_context(context)))
        return ExtensionView.model_validate(info)

    @router.get(
        "/endpoints/{name}",
        tags=["states"],
        response_model=EndpointView,
        responses={**NOT_FOUND, **AMI_ERRORS},
    )
    async def endpoint_state(
        request: Request, name: Annotated[str, Path(max_length=fields.MAX_EXTENSION, pattern=ENDPOINT_PATTERN)]
    ) -> EndpointView:
        """A PJSIP endpoint: registered contacts (URI, user agent), reachability with round-trip time,
        device state. AMI `PJSIPShowEndpoint`. 404 for an unknown endpoint."""
        authorize(request, "state", None, None)
        require_ami()
        return EndpointView.model_validate(await run(control.endpoint(name)))

    @router.get(
        "/channels/{tech}/{resource:path}",
        tags=["states"],
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
    ) -> ChannelInfo:
        """A live channel's state by its name (`GET /v1/channels/PJSIP/8001-00000004`): AMI `Status`.

        404 when Asterisk has no such channel.
        """
        authorize(request, "state", None, None)
        name = f"{tech}/{resource}"
        try:
            fields.channel("channel", name)
        except fields.FieldError as exc:
            raise ApiError(422, "validation_failed", str(exc)) from None
        require_ami()
        return await run(control.channel(name))

    @router.get(
        "/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: `id`, `event` (the type) and `data` (one JSON object: the "
                "CRM event's fields plus id, uniqueid, linkedid, tracked, timestamp); a `: heartbeat` comment "
                "every 15 s; a final `event: dropped` if the client fell behind.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            503: _error("Too many live event streams are open (in all, or of this token)."),
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
        32 streams at once, 8 per token.
        """
        authorize(request, "state", None, None)
        types = event_types.split(",") if event_types else None
        try:
            subscription = hub.subscribe(types, call, last_event_id, owner=access.owner(request))
        except TooManySubscribers as exc:
            raise ApiError(503, "too_many_subscribers", str(exc), headers={"Retry-After": "5"}) from None
        return EventStreamResponse(
            hub.stream(subscription),
            send_timeout_s=hub.send_timeout_s,
            on_stall=lambda: hub.stalled(subscription),
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

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
