"""The request and response bodies of ``/v1``, and how a call and its channels are shown.

Requests (:class:`CallCreate`, :class:`TransferCreate`, :class:`MessageCreate`)
refuse unknown fields; their strings are :mod:`salara.api.v1.fieldtypes`.
Responses are views: :func:`call_view` builds a :class:`CallView` from a
:class:`~salara.calls.call.Call`; extensions and endpoints are read straight
from control's records (``from_attributes``). Times are UTC datetimes. The
error body is :class:`salara.api.v1.errors.ErrorBody`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from salara.api.v1.fieldtypes import (
    CallerIdName,
    ChannelName,
    Context,
    Extension,
    MessageText,
    PbxName,
    VariableName,
    VariableValue,
)
from salara.calls.call import Call, Channel
from salara.calls.ids import pbx_of
from salara.calls.outcome import originate_reason_text
from salara.fields import CLIENT_STATE_MAX_BYTES
from salara.states import channel_state_name
from salara.utc import utc_datetime


def _client_state(value: str) -> str:
    if len(value.encode()) > CLIENT_STATE_MAX_BYTES:
        raise ValueError(f"at most {CLIENT_STATE_MAX_BYTES} bytes of UTF-8")
    return value


ClientState = Annotated[str, AfterValidator(_client_state)]


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
    client_state: ClientState | None = Field(
        None,
        description="Any string of yours (at most 1,024 bytes of UTF-8), kept with the call and echoed on every "
        "lifecycle event of it (call.started ... call.ended), also on a reconciled call.ended.",
        examples=["lead-4711"],
    )
    record: bool | None = Field(
        None,
        description="Record the call (Asterisk's MixMonitor, only while bridged); default `[recordings] "
        "record_calls`. The file is served by `GET /v1/recordings/{id}`; `call.ended` links to it.",
    )
    pbx: PbxName | None = None


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
    pbx: PbxName | None = None


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

    id: str = Field(
        description="The call's Linkedid (salara chooses it for the calls it places); `NAME:Linkedid` on a PBX "
        "but `default`."
    )
    pbx: str = Field(description="The call's PBX: `default`, or its `[ami NAME]`.", examples=["default"])
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
    client_state: str | None = Field(None, description="The client_state the call was placed (or routed) with.")


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
    pbx: str = Field("default", description="The PBX that answered.")
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


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else utc_datetime(seconds)


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
        created_at=_utc(channel.created_at),
        answered_at=_utc(channel.answered_at),
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
        pbx=pbx_of(call.id),
        state=call.state,
        from_=call.from_,
        to=call.to,
        context=call.context,
        placed_by_salara=call.origin is not None,
        created_at=_utc(call.created_at),
        answered_at=_utc(call.answered_at),
        ended_at=_utc(call.ended_at),
        channels=[channel_view(channel) for channel in call.channels.values()],
        outcome=outcome,
        client_state=call.client_state,
    )
