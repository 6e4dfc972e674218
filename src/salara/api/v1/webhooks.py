"""The bodies salara POSTs to ``[url] dest_url_event``, as models: the OpenAPI document's ``webhooks``.

They describe what :mod:`salara.events.payload` builds, field for field
(``extra="forbid"``: a body with a field not described here does not
validate, so a test catches a builder that grew one):

- the SPEC §2 events (``Newchannel``, ``Newexten``, ``Hangup``,
  ``AgentConnect``) in their *compat* form (``[event] payload = compat``,
  the old module's bytes) and their *extended* form (``payload =
  extended``: the compat fields plus ``uniqueid``, ``linkedid``, ``pbx``,
  ``tracked``, ``timestamp``, ``id`` and, on a Hangup salara did not see,
  ``synthesized``); the live stream's ``data`` is always the extended form;
- the lifecycle events (``call.started`` ... ``call.ended``,
  :mod:`salara.calls.lifecycle`), one flat form, sent with the extended
  payload and ``[event] lifecycle = yes``.

:data:`WEBHOOKS` lists each event type with its bodies, in the order of
:data:`salara.events.hub.EVENT_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from salara.states import CHANNEL_STATE_EVENT_NAMES

_STATE = "The channel's state: " + ", ".join(CHANNEL_STATE_EVENT_NAMES) + "."
_TIMESTAMP = "When it happened, ISO 8601 UTC with milliseconds: Asterisk's event Timestamp when it sends one."


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- SPEC §2 events: compat ----------------------------------------------------------


class _ChannelCompat(_Body):
    chan: str = Field(description="The channel's name.", examples=["PJSIP/8001-0000000e"])
    caller: str = Field(
        description="For a tracked call the caller salara tracked it with, else the event's CallerIDNum.",
        examples=["8001"],
    )
    exten: str = Field(
        description="For a tracked call the number salara tracked it with, else the event's Exten.", examples=["9002"]
    )
    state: str = Field(description=_STATE, examples=["UP"])


class NewchannelCompat(_ChannelCompat):
    """A channel was created (`[event] newchannel`), as the old module sent it."""

    event: Literal["Newchannel"]


class NewextenCompat(_ChannelCompat):
    """A channel went to a dialplan step (`[event] newexten`), as the old module sent it."""

    event: Literal["Newexten"]
    app: str = Field(description="The dialplan application of the step.", examples=["Dial"])


class HangupCompat(_ChannelCompat):
    """A channel hung up (`[event] hangup`), as the old module sent it."""

    event: Literal["Hangup"]


class AgentConnectCompat(_Body):
    """A queue member answered (`[event] agentcon`), as the old module sent it."""

    event: Literal["AgentConnect"]
    chan: str = Field(description="The caller's channel.", examples=["PJSIP/8001-00000000"])
    caller: str = Field(examples=["8001"])
    queue: str = Field(examples=["710"])
    state: str = Field(description=_STATE, examples=["UP"])
    agent: str = Field(description="The member's number, from its interface.", examples=["2222"])


# -- SPEC §2 events: extended --------------------------------------------------------


class _Extended(_Body):
    uniqueid: str = Field(description="The channel's Uniqueid.", examples=["salara-80e54b6ae6dc"])
    linkedid: str = Field(description="The call's id (its Linkedid).", examples=["salara-80e54b6ae6dc"])
    pbx: str = Field(
        description="The PBX of the call: `default` (`[ami]`), else the name of its `[ami NAME]` section, "
        "whose call ids start with `NAME:`.",
        examples=["default"],
    )
    tracked: bool = Field(description="Whether salara tracks the call (it routed or placed it).")
    timestamp: str = Field(description=_TIMESTAMP, examples=["2026-11-29T16:41:49.494Z"])
    id: str = Field(
        description="The event's id: also the `webhook-id` header and the live stream's `id`.",
        examples=["5ada9f2bae854926a4675f0a95327914"],
    )


class NewchannelExtended(NewchannelCompat, _Extended):
    """A channel was created: the compat fields and what correlates the event."""


class NewextenExtended(NewextenCompat, _Extended):
    """A channel went to a dialplan step: the compat fields and what correlates the event."""


class HangupExtended(HangupCompat, _Extended):
    """A channel hung up: the compat fields and what correlates the event."""

    synthesized: Literal[True] | None = Field(
        None,
        description="Present (true) on a Hangup salara did not see: the channel was gone when salara looked "
        "again (after an AMI reconnect, a restart, or a sweep); its `state` is the last one known, its "
        "`timestamp` when salara found it gone.",
    )


class AgentConnectExtended(AgentConnectCompat, _Extended):
    """A queue member answered: the compat fields and what correlates the event."""


# -- lifecycle events ----------------------------------------------------------------

Leg = Literal["operator", "called"]


class _Lifecycle(_Body):
    id: str = Field(
        description="The event's id: also the `webhook-id` header and the live stream's `id`.",
        examples=["9b1e5f0c2a7d4e0b8c1f3a6d2e9b7c04"],
    )
    call_id: str = Field(description="The call's id (its Linkedid).", examples=["salara-80e54b6ae6dc"])
    pbx: str = Field(
        description="The PBX of the call: `default` (`[ami]`), else the name of its `[ami NAME]` section, "
        "whose call ids start with `NAME:`.",
        examples=["default"],
    )
    direction: Literal["outbound", "inbound", "internal"] = Field(
        description="`outbound`: salara placed it; `inbound`: salara routed it, or it is in a context of "
        "[calls] inbound_contexts; else `internal` (as known at the event)."
    )
    from_: str | None = Field(alias="from", description="The calling party.", examples=["8001"])
    to: str | None = Field(
        description="The called party (a call salara routed: the destination chosen).", examples=["9001"]
    )
    operator: str | None = Field(description="A call salara placed: its operator (`from`).", examples=["8001"])
    caller_name: str | None = Field(
        description="The caller's name on the calling channel: Asterisk's, or the one the CRM's routing answer gave.",
        examples=["Anna Schmidt (ACME)"],
    )
    timestamp: str = Field(description=_TIMESTAMP, examples=["2026-11-29T16:41:43.012Z"])
    client_state: str | None = Field(
        description="The client_state the call was placed (or routed) with.", examples=["lead-4711"]
    )


class _Approximate(_Body):
    reconciled: Literal[True] | None = Field(
        None, description="Present (true) when salara found the call from a channel list, not from its events."
    )
    approximate: Literal[True] | None = Field(None, description="Present (true) when the times are salara's estimate.")


class CallStarted(_Lifecycle, _Approximate):
    """A call's first channel appeared."""

    type: Literal["call.started"]
    channel: str | None = Field(description="The call's first channel.", examples=["PJSIP/8001-00000010"])


class CallRinging(_Lifecycle):
    """A device the call reaches rings (Local/ channels are not told)."""

    type: Literal["call.ringing"]
    leg: Leg = Field(description="`operator`: the first leg of a call salara placed; else `called`.")
    channel: str = Field(examples=["PJSIP/8001-00000010"])
    endpoint: str = Field(description="The ringing device.", examples=["PJSIP/8001"])


class CallAnswered(_Lifecycle):
    """The operator (a call salara placed) or the called side answered."""

    type: Literal["call.answered"]
    leg: Leg
    channel: str | None = Field(description="The channel that answered, when known.", examples=["PJSIP/9001-00000011"])
    answered_by: str | None = Field(
        None,
        description="Leg `called` only: what showed the answer (a channel's name, `Dial ANSWER`, `Answer()`).",
        examples=["PJSIP/9001-00000011"],
    )


class TransferRecord(_Body):
    """One transfer of a call."""

    transfer: Literal["blind", "attended", "redirect"] = Field(
        description="A blind feature transfer, an attended one, or salara's own Redirect (POST .../transfer)."
    )
    channel: str = Field(description="The channel moved.", examples=["PJSIP/9001-00000011"])
    target: str = Field(description="Where it went.", examples=["9002"])
    target_context: str | None = Field(examples=["phones"])
    transferer: str | None = Field(description="The channel that made the transfer, when known.")
    at: str | None = Field(description="ISO 8601 UTC.", examples=["2026-11-29T16:41:45.210Z"])


class CallTransferred(_Lifecycle, TransferRecord):
    """The call was transferred (blind, attended, or by salara's Redirect)."""

    type: Literal["call.transferred"]


class CallEnded(_Lifecycle, _Approximate):
    """The call ended: its summary, exactly once per call."""

    type: Literal["call.ended"]
    started_at: str | None = Field(examples=["2026-11-29T16:41:42.901Z"])
    answered_at: str | None = Field(
        description="When the called side answered; null if it never did.", examples=["2026-11-29T16:41:44.377Z"]
    )
    ended_at: str | None = Field(examples=["2026-11-29T16:41:49.494Z"])
    duration_s: float = Field(description="From start to end, seconds.", examples=[6.593])
    talk_s: float = Field(description="From the answer to the end, seconds (0 if not answered).", examples=[5.117])
    result: Literal["answered", "busy", "no_answer", "failed", "unknown"] = Field(
        description="How the call went, as `GET /v1/calls/{id}` shows it (`outcome.result`)."
    )
    reason: str | None = Field(description="Asterisk's reasons in words.", examples=["Dial ANSWER"])
    hangup_cause: int | None = Field(description="Q.850 cause of the Hangup.", examples=[16])
    hangup_cause_text: str | None = Field(examples=["Normal Clearing"])
    dial_status: str | None = Field(examples=["ANSWER"])
    operator_result: Literal["answered", "busy", "no_answer", "failed", "unknown"] | None = Field(
        description="A call salara placed: how the operator's leg went."
    )
    hung_up_by: Literal["operator", "caller", "called", "salara"] | None = Field(
        description="Whose hangup ended the call, when known."
    )
    queue: str | None = Field(examples=["710"])
    agent: str | None = Field(examples=["2222"])
    transfers: list[TransferRecord] = Field(description="Every transfer of the call, in order.")
    missed: bool = Field(description="An inbound call that was not answered.")
    recording: str | None = Field(
        None,
        description="The signed, expiring link to the call's recording under `[api] public_url` (fetched without "
        "headers; `GET /v1/recordings/{call_id}` with a token serves it too); null when the call was not recorded "
        "or not answered, or no `public_url` is set.",
        examples=[
            "https://pbx.example.com:5058/v1/recordings/salara-80e54b6ae6dc?expires=1796571709&signature=3f1c...9a"
        ],
    )


@dataclass(frozen=True, slots=True)
class Webhook:
    """One event type of the webhooks: its bodies (compat first) and what it is."""

    name: str
    summary: str
    bodies: tuple[type[BaseModel], ...]


WEBHOOKS: Final[tuple[Webhook, ...]] = (
    Webhook("Newchannel", "A channel was created.", (NewchannelCompat, NewchannelExtended)),
    Webhook("Newexten", "A channel went to a dialplan step.", (NewextenCompat, NewextenExtended)),
    Webhook("Hangup", "A channel hung up.", (HangupCompat, HangupExtended)),
    Webhook("AgentConnect", "A queue member answered.", (AgentConnectCompat, AgentConnectExtended)),
    Webhook("call.started", "A call started (lifecycle).", (CallStarted,)),
    Webhook("call.ringing", "A device of a call rings (lifecycle).", (CallRinging,)),
    Webhook("call.answered", "A call was answered (lifecycle).", (CallAnswered,)),
    Webhook("call.transferred", "A call was transferred (lifecycle).", (CallTransferred,)),
    Webhook("call.ended", "A call ended, with its summary (lifecycle).", (CallEnded,)),
)

# -- examples (the OpenAPI document's; built into bodies by salara.events.payload) ------

EXAMPLE_CALL_ID = "salara-80e54b6ae6dc"
_CHANNEL_EVENT = {"chan": "PJSIP/8001-00000010", "caller": "8001", "exten": "9001", "state": "UP"}
WEBHOOK_EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "Newchannel": {"event": "Newchannel", **_CHANNEL_EVENT, "state": "DOWN"},
    "Newexten": {"event": "Newexten", **_CHANNEL_EVENT, "app": "Dial"},
    "Hangup": {"event": "Hangup", **_CHANNEL_EVENT},
    "AgentConnect": {
        "event": "AgentConnect",
        "chan": "PJSIP/8001-00000000",
        "caller": "8001",
        "queue": "710",
        "state": "UP",
        "agent": "2222",
    },
}
"""The SPEC §2 events' compat payloads (the extended body adds what correlates them)."""

_LIFECYCLE = {
    "call_id": EXAMPLE_CALL_ID,
    "pbx": "default",
    "direction": "outbound",
    "from": "8001",
    "to": "9001",
    "operator": "8001",
    "caller_name": None,
}
_TRANSFER = {
    "transfer": "redirect",
    "channel": "PJSIP/9001-00000011",
    "target": "9002",
    "target_context": "phones",
    "transferer": None,
    "at": "2026-11-29T16:41:47.002Z",
}
LIFECYCLE_EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "call.started": {**_LIFECYCLE, "channel": "PJSIP/8001-00000010", "timestamp": "2026-11-29T16:41:42.901Z"},
    "call.ringing": {
        **_LIFECYCLE,
        "leg": "operator",
        "channel": "PJSIP/8001-00000010",
        "endpoint": "PJSIP/8001",
        "timestamp": "2026-11-29T16:41:43.012Z",
    },
    "call.answered": {
        **_LIFECYCLE,
        "leg": "called",
        "channel": "PJSIP/9001-00000011",
        "answered_by": "PJSIP/9001-00000011",
        "timestamp": "2026-11-29T16:41:44.377Z",
    },
    "call.transferred": {**_LIFECYCLE, **_TRANSFER, "timestamp": "2026-11-29T16:41:47.002Z"},
    "call.ended": {
        **_LIFECYCLE,
        "started_at": "2026-11-29T16:41:42.901Z",
        "answered_at": "2026-11-29T16:41:44.377Z",
        "ended_at": "2026-11-29T16:41:49.494Z",
        "duration_s": 6.593,
        "talk_s": 5.117,
        "result": "answered",
        "reason": "Dial ANSWER",
        "hangup_cause": 16,
        "hangup_cause_text": "Normal Clearing",
        "dial_status": "ANSWER",
        "operator_result": "answered",
        "hung_up_by": "called",
        "queue": None,
        "agent": None,
        "transfers": [_TRANSFER],
        "missed": False,
        "recording": None,
        "timestamp": "2026-11-29T16:41:49.494Z",
    },
}
"""The lifecycle events' fields, as :mod:`salara.calls.lifecycle` decides them (``client_state`` is added)."""
