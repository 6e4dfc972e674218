"""The compat answers (SPEC §1): ``{"result": N, "text": "..."}`` for each kind of request."""

from __future__ import annotations

from dataclasses import dataclass

from salara.api.compat.request import (
    ChannelStateQuery,
    CompatRequest,
    ExtensionStateQuery,
    MakeCall,
    PeerStateQuery,
    SendMessage,
)
from salara.control import CallControl, PlaceCall
from salara.errors import NotFound
from salara.pbx import ExtensionInfo
from salara.states import channel_state_event_name, channel_state_name

PEER_TEXT = {"reachable": "Reachable", "unreachable": "Unreachable", "unknown": "Unknown"}


@dataclass(frozen=True, slots=True)
class StateAnswer:
    """The compat answer ``{"result": N, "text": "..."}``."""

    result: int
    text: str

    def as_dict(self) -> dict[str, int | str]:
        return {"result": self.result, "text": self.text}


def extension_answer(state: ExtensionInfo) -> StateAnswer:
    """An extension state as the compat answer: its code and Asterisk's name (``0 Idle``, ``-1 Unknown``)."""
    return StateAnswer(state.state, state.state_text)


async def peer_answer(control: CallControl, peer: str) -> StateAnswer:
    """``0 Reachable``/``Unreachable``/``Unknown`` from AMI ``PJSIPShowEndpoint``; ``-1 Error`` for no such peer."""
    try:
        endpoint = await control.pbx.endpoint(peer)
    except NotFound:
        return StateAnswer(-1, "Error")
    return StateAnswer(0, PEER_TEXT[endpoint.reachability])


async def channel_answer(control: CallControl, channel: str) -> StateAnswer:
    """The state of a live channel from AMI ``Status``; ``-1 Channel not present`` for none.

    As ``[general] answers`` says: ``readme`` (default) ``0 Up (6)``, the
    state's name and code as the old module's README documents it;
    ``module`` ``6 UP``, the code and the capital name as its code sent it.
    AMI errors propagate (:class:`~salara.errors.AMIError`).
    """
    try:
        info = await control.pbx.channel(channel)
    except NotFound:
        return StateAnswer(-1, "Channel not present")
    code = info.state_code
    if control.config.general.answers == "module":
        return StateAnswer(code, channel_state_event_name(code))
    return StateAnswer(0, f"{channel_state_name(code)} ({code})")


def answer_now(control: CallControl, request: CompatRequest) -> StateAnswer | None:
    """The answer to ``request`` when it needs no AMI round trip (a hint state salara follows), else None.

    The same answer :func:`answer` would give, without its coroutines: most
    compat requests are polls of the same extensions.
    """
    if type(request) is ExtensionStateQuery:
        known = control.sites.serving(request.context).pbx.known_extension_state(request.exten, request.context)
        if known is not None:
            return extension_answer(known)
    return None


async def answer(control: CallControl, request: CompatRequest) -> StateAnswer:
    """Carry out one compat request on Asterisk (AMI errors propagate)."""
    match request:
        case MakeCall(operator, phone, context):
            state, _ = await control.make_call(PlaceCall(operator, phone, context))
            return extension_answer(state)
        case SendMessage(operator, phone, text, context):
            state, _ = await control.send_message(operator, phone, text, context)
            return extension_answer(state)
        case ExtensionStateQuery(exten, context):
            return extension_answer(await control.sites.serving(context).pbx.extension_state(exten, context))
        case PeerStateQuery(peer):
            return await peer_answer(control, peer)
        case ChannelStateQuery(channel):
            return await channel_answer(control, channel)
