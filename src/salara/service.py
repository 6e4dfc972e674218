"""Call control on Asterisk through AMI: states, originate, messages.

The operations behind both the compat API and ``/v1``; each is one or two
AMI actions (named in its docstring). Errors: :class:`AMIUnavailable` when
AMI is down, :class:`AMIError` when Asterisk does not answer in time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from salara.ami.client import AMIClient
from salara.ami.messages import Event
from salara.calls import CallTracker
from salara.config import Config
from salara.errors import AMIActionError
from salara.states import channel_state_name, extension_state_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StateAnswer:
    """The compat answer ``{"result": N, "text": "..."}``."""

    result: int
    text: str

    def as_dict(self) -> dict[str, int | str]:
        return {"result": self.result, "text": self.text}


@dataclass(frozen=True, slots=True)
class Placed:
    """An Originate Asterisk accepted: the call's Linkedid and the future outcome event."""

    linkedid: str
    outcome: asyncio.Future[Event]


def new_channel_id() -> str:
    """A Uniqueid for the first channel of a call salara originates.

    Choosing it (``Originate`` ``ChannelId``) makes it the call's Linkedid
    before Asterisk emits a single event, so the call can be tracked from its
    very first ``Newchannel``. 19 characters: fits CDR schemas of 32.
    """
    return f"salara-{secrets.token_hex(6)}"


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class CallObserver(Protocol):
    """Told about every call :meth:`Telephony.make_call` places (the active-call registry)."""

    def originating(self, linkedid: str, operator: str, phone: str, context: str) -> None:
        """Right before the ``Originate`` is sent."""

    def originated(self, linkedid: str, outcome: asyncio.Future[Event] | None) -> None:
        """Asterisk queued it (``outcome``: the future ``OriginateResponse``), or None: it was not sent."""


class Telephony:
    """State queries and actions of the compat API (SPEC §1) over one AMI client."""

    def __init__(self, ami: AMIClient, config: Config, tracker: CallTracker | None = None) -> None:
        self.ami = ami
        self.config = config
        self.tracker = tracker
        """Tracks placed calls for events when ``[event] watch_makecall`` is on."""
        self.observers: list[CallObserver] = []
        """Told about every call placed (compat make call and ``/v1``)."""
        self._state_queries: dict[tuple[str, str], asyncio.Task[StateAnswer]] = {}

    def is_good(self, state: StateAnswer) -> bool:
        """Whether an extension state counts as available (``[url] good_status``)."""
        return state.result in self.config.url.good_status

    async def extension_state(self, exten: str, context: str) -> StateAnswer:
        """AMI ``ExtensionState``: the hint state of ``exten@context``.

        -1 ``Unknown`` when there is no such extension or it has no hint.
        Identical queries made while one is in flight share its answer: CRMs
        poll the same extensions in bursts, and the state a joiner gets was
        read at most one AMI round trip before it asked.
        """
        key = (exten, context)
        query = self._state_queries.get(key)
        if query is None:
            query = asyncio.create_task(self._extension_state(exten, context))
            self._state_queries[key] = query
            query.add_done_callback(lambda done: self._query_done(key, done))
        # Shielded: one caller giving up (client gone) must not cancel the others' answer.
        return await asyncio.shield(query)

    def _query_done(self, key: tuple[str, str], query: asyncio.Task[StateAnswer]) -> None:
        self._state_queries.pop(key, None)
        if not query.cancelled():
            query.exception()  # retrieved here: every waiter may have gone

    async def _extension_state(self, exten: str, context: str) -> StateAnswer:
        response = await self.ami.action("ExtensionState", {"Exten": exten, "Context": context})
        code = _int(response.get("Status"), -1)
        return StateAnswer(code, extension_state_name(code))

    async def peer_state(self, peer: str) -> StateAnswer:
        """AMI ``PJSIPShowEndpoint``: reachability of a PJSIP endpoint.

        ``Reachable`` if a contact answers qualify, ``Unreachable`` if contacts
        exist and none answers, ``Unknown`` if none is registered or none is
        qualified; ``-1 Error`` for an unknown endpoint. Falls back to chan_sip
        ``SIPshowpeer`` on an Asterisk without PJSIP.
        """
        response = await self.ami.action("PJSIPShowEndpoint", {"Endpoint": peer}, check=False)
        if not response.ok:
            if "invalid/unknown command" in response.message.lower():
                return await self._sip_peer_state(peer)
            return StateAnswer(-1, "Error")
        statuses = [(event.get("Status") or "") for event in response.events if event.name == "ContactStatusDetail"]
        if "Reachable" in statuses:
            return StateAnswer(0, "Reachable")
        if "Unreachable" in statuses:
            return StateAnswer(0, "Unreachable")
        return StateAnswer(0, "Unknown")

    async def _sip_peer_state(self, peer: str) -> StateAnswer:
        response = await self.ami.action("SIPshowpeer", {"Peer": peer}, check=False)
        if not response.ok:
            return StateAnswer(-1, "Error")
        status = (response.get("Status") or "").upper()
        if status.startswith("OK"):
            return StateAnswer(0, "Reachable")
        if status.startswith(("UNREACHABLE", "LAGGED")):
            return StateAnswer(0, "Unreachable")
        return StateAnswer(0, "Unknown")

    async def channel_state(self, channel: str) -> StateAnswer:
        """AMI ``Status`` of one channel: ``Up (6)``; ``-1 Channel not present``."""
        response = await self.ami.action("Status", {"Channel": channel}, check=False)
        items = [event for event in response.items if event.name == "Status"]
        if not response.ok or not items:
            return StateAnswer(-1, "Channel not present")
        code = _int(items[0].get("ChannelState"), 10)
        return StateAnswer(0, f"{channel_state_name(code)} ({code})")

    async def make_call(
        self,
        operator: str,
        phone: str,
        context: str,
        *,
        caller_id_name: str | None = None,
        variables: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[StateAnswer, Placed | None]:
        """Click-to-call: ring the operator's device, then dial ``phone`` in ``context``.

        Checks the operator's extension state first (``ExtensionState``); only
        when it is good sends ``Originate`` (Async) of
        ``<operator_technology>/<operator>`` to ``phone@context`` priority 1,
        CallerID ``"<caller_id_name or operator>" <operator>``, one
        ``Variable: NAME=value`` per entry of ``variables``, ring timeout
        ``timeout_s`` (default ``[event] timeout_makecall``) seconds.
        :attr:`observers` hear of it before it is sent and after. Every value
        must have been validated (``salara.fields``) by the caller.
        Returns the state and, when placed, the call's Linkedid and outcome.
        """
        state = await self.extension_state(operator, context)
        if not self.is_good(state):
            log.info("make call %s -> %s refused: operator is %s", operator, phone, state.text)
            return state, None
        config = self.config
        linkedid = new_channel_id()
        ring_s = config.event.timeout_makecall if timeout_s is None else timeout_s
        fields: list[tuple[str, str | int]] = [
            ("Channel", f"{config.general.operator_technology}/{operator}"),
            ("Context", context),
            ("Exten", phone),
            ("Priority", 1),
            ("CallerID", f'"{caller_id_name or operator}" <{operator}>'),
            ("Timeout", int(ring_s * 1000)),
            ("ChannelId", linkedid),
        ]
        fields += [("Variable", f"{name}={value}") for name, value in (variables or {}).items()]
        tracker = self.tracker if config.event.watch_makecall else None
        if tracker is not None:
            # Tracked before the Originate leaves, so its first Newchannel counts.
            tracker.track(linkedid, operator, phone, "makecall", time.monotonic())
        for observer in self.observers:
            observer.originating(linkedid, operator, phone, context)
        try:
            _, outcome = await self.ami.originate(fields, timeout_s=ring_s + 30)
        except BaseException:
            if tracker is not None:
                tracker.forget(linkedid)
            for observer in self.observers:
                observer.originated(linkedid, None)
            raise
        for observer in self.observers:
            observer.originated(linkedid, outcome)
        if tracker is not None:
            outcome.add_done_callback(lambda done: self._originate_done(linkedid, done))
        log.info("make call %s -> %s@%s queued (call %s)", operator, phone, context, linkedid)
        return state, Placed(linkedid, outcome)

    def _originate_done(self, linkedid: str, outcome: asyncio.Future[Event]) -> None:
        """A failed Originate that created no channel will send no Hangup: stop tracking it."""
        if self.tracker is None:
            return
        failed = outcome.cancelled() or outcome.exception() is not None
        if not failed and outcome.result().get("Response") == "Failure":
            failed = True
        call = self.tracker.calls.get(linkedid)
        if failed and call is not None and not call.channels:
            self.tracker.forget(linkedid)

    async def send_message(self, operator: str, phone: str, text: str, context: str) -> tuple[StateAnswer, bool]:
        """Send a SIP MESSAGE to the operator's endpoint, from ``phone``.

        Checks the operator's extension state (``ExtensionState``); when good
        sends ``MessageSend`` to ``pjsip:<operator>`` with From ``phone``.
        Returns the state and whether Asterisk accepted the message.
        """
        state = await self.extension_state(operator, context)
        if not self.is_good(state):
            log.info("message to %s refused: operator is %s", operator, state.text)
            return state, False
        return state, await self.message_send(operator, phone, text) is None

    async def message_send(self, operator: str, phone: str, text: str) -> str | None:
        """AMI ``MessageSend`` to ``pjsip:<operator>`` from ``phone``, without a state check.

        Returns None when Asterisk accepted the message, else Asterisk's reason
        (e.g. ``Message failed to send.`` for an unregistered endpoint).
        """
        try:
            await self.ami.action(
                "MessageSend",
                {"To": f"pjsip:{operator}", "From": f'"{phone}" <sip:{phone}@localhost>', "Body": text},
            )
        except AMIActionError as exc:
            log.warning("message to %s not sent: %s", operator, exc.message)
            return exc.message or "refused"
        log.info("message from %s to %s sent", phone, operator)
        return None
