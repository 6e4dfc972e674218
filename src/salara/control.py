"""Call control behind ``/v1``: calls as resources, over the same AMI client as the compat API.

:class:`CallControl` places calls (through :meth:`Telephony.make_call
<salara.service.Telephony.make_call>`, so the compat rules apply), hangs
them up, transfers them, and reads extensions, endpoints and channels. It
keeps the :class:`~salara.channels.ChannelRegistry` fed: every AMI event, and
a ``CoreShowChannels`` resynchronisation after every AMI (re)connect.

Errors: :class:`NotFound` and :class:`Conflict` (with a stable ``error`` id)
for what the caller asked; :class:`~salara.errors.AMIUnavailable` when AMI is
down, :class:`~salara.errors.AMIActionError` when Asterisk refused,
:class:`~salara.errors.AMIError` when it did not answer in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from salara.ami.client import AMIClient
from salara.ami.messages import Event
from salara.channels import HANDLED_EVENTS, Call, ChannelRegistry, known
from salara.errors import AMIActionError, SalaraError
from salara.service import Telephony
from salara.states import channel_state_name, extension_state_name

log = logging.getLogger(__name__)

T = TypeVar("T")

IDEMPOTENCY_WINDOW_S: Final = 24 * 3600.0
IDEMPOTENCY_MAX_KEYS: Final = 10_000


class ControlError(SalaraError):
    """A request that cannot be carried out: ``error`` is a stable id, ``details`` says more."""

    error = "error"

    def __init__(self, message: str, *, error: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error is not None:
            self.error = error
        self.details = dict(details or {})


class NotFound(ControlError):
    """No such call, extension, endpoint or channel (HTTP 404)."""

    error = "not_found"


class Unprocessable(ControlError):
    """Well-formed, but Asterisk cannot act on it, e.g. no such extension in the context (HTTP 422)."""

    error = "unprocessable"


class Conflict(ControlError):
    """The request clashes with the state of things (HTTP 409): operator busy, call ended..."""

    error = "conflict"


# -- idempotency ---------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    created_at: float
    result: asyncio.Future[Any]


class IdempotencyCache:
    """``Idempotency-Key`` handling: one result per key and scope within ``window_s`` seconds.

    The first request with a key runs; a later (or concurrent) one with the
    same key and the same request gets the same result, never a second run;
    the same key with a different request raises :class:`Conflict`. A run
    that fails is forgotten, so the request may be retried with its key.
    Keys are looked up before anything runs, so a replay costs nothing but
    the lookup (the rate is spent inside ``work``, by new runs only). Keys
    live in a ``scope`` (the client: one client's key is not another's).
    At most ``max_keys`` keys are kept (the oldest goes first).
    """

    def __init__(self, window_s: float = IDEMPOTENCY_WINDOW_S, max_keys: int = IDEMPOTENCY_MAX_KEYS) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.replays = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def run(
        self, key: str, fingerprint: str, now: float, work: Callable[[], Awaitable[T]], scope: str = ""
    ) -> tuple[T, bool]:
        """``(result, replayed)``: the result of ``work()`` for ``key`` in ``scope``, run at most once."""
        self._expire(now)
        scoped = (scope, key)
        entry = self._entries.get(scoped)
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise Conflict(
                    "this Idempotency-Key was used for a different request",
                    error="idempotency_key_reused",
                    details={"idempotency_key": key},
                )
            self.replays += 1
            return await asyncio.shield(entry.result), True
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[scoped] = _Entry(fingerprint, now, result)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        try:
            value = await work()
        except BaseException as exc:
            if self._entries.get(scoped) is not None and self._entries[scoped].result is result:
                del self._entries[scoped]
            if isinstance(exc, Exception):
                result.set_exception(exc)
                result.exception()  # retrieved: no warning when nobody else waited
            else:
                result.cancel()
            raise
        result.set_result(value)
        return value, False

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if now - oldest.created_at <= self.window_s:
                break
            entries.popitem(last=False)


# -- views -------------------------------------------------------------------


def utc(seconds: float | None) -> datetime | None:
    """Unix seconds as an aware UTC datetime."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def variable_problems(variables: Mapping[str, str], prefix: str) -> list[str]:
    """The names in ``variables`` a client may not set: any not starting with ``prefix``, any starting with ``_``.

    An allow-list: Asterisk reads many channel variables as instructions
    (``BRIDGE_FEATURES`` gives a party the transfer key, ``TRANSFER_CONTEXT``
    says where it may dial, a leading ``_``/``__`` passes one on to every
    channel the call creates), and new ones come with new versions. Only
    names of the CRM's own namespace, ``[api] variable_prefix``, get through.
    """
    return [name for name in variables if name.startswith("_") or not name.startswith(prefix)]


@dataclass(frozen=True, slots=True)
class PlaceCall:
    """What ``POST /v1/calls`` asks for; every value already validated."""

    from_: str
    to: str
    context: str
    caller_id_name: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class ExtensionInfo:
    exten: str
    context: str
    hint: str | None
    state: int
    state_text: str
    available: bool


@dataclass(frozen=True, slots=True)
class Contact:
    uri: str
    user_agent: str | None
    status: str
    rtt_ms: float | None
    via: str | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    name: str
    registered: bool
    reachability: str
    """``reachable``, ``unreachable`` or ``unknown`` (no contact, or none qualified)."""
    rtt_ms: float | None
    device_state: str | None
    active_channels: int | None
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    name: str
    uniqueid: str | None
    linkedid: str | None
    state: str
    state_code: int
    caller_number: str | None
    caller_name: str | None
    connected_number: str | None
    connected_name: str | None
    context: str | None
    exten: str | None
    priority: int | None
    application: str | None
    application_data: str | None
    duration_s: int | None
    bridge_id: str | None


def _opt_int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _reachability(statuses: list[str]) -> str:
    if "Reachable" in statuses:
        return "reachable"
    if "Unreachable" in statuses:
        return "unreachable"
    return "unknown"


def contact_of(event: Event) -> Contact:
    """A ``ContactStatusDetail`` event as a :class:`Contact` (round trip in ms, expiry as UTC)."""
    rtt_usec = _opt_int(event.get("RoundtripUsec"))
    expires = _opt_int(event.get("RegExpire"))
    return Contact(
        uri=event.get("URI") or "",
        user_agent=known(event.get("UserAgent")),
        status=event.get("Status") or "Unknown",
        rtt_ms=rtt_usec / 1000 if rtt_usec else None,
        via=known(event.get("ViaAddress")),
        expires_at=utc(expires) if expires else None,
    )


def endpoint_of(name: str, events: tuple[Event, ...]) -> EndpointInfo:
    """Normalise a ``PJSIPShowEndpoint`` list: contacts, reachability, device state."""
    contacts = tuple(contact_of(e) for e in events if e.name == "ContactStatusDetail")
    detail = next((e for e in events if e.name == "EndpointDetail"), None)
    reachable = [c.rtt_ms for c in contacts if c.status == "Reachable" and c.rtt_ms is not None]
    return EndpointInfo(
        name=name,
        registered=bool(contacts),
        reachability=_reachability([c.status for c in contacts]),
        rtt_ms=min(reachable) if reachable else None,
        device_state=known(detail.get("DeviceState")) if detail is not None else None,
        active_channels=_opt_int(detail.get("ActiveChannels")) if detail is not None else None,
        contacts=contacts,
    )


def channel_of(item: Event) -> ChannelInfo:
    """A ``Status`` list item as a :class:`ChannelInfo`."""
    code = _opt_int(item.get("ChannelState"))
    code = 10 if code is None else code
    return ChannelInfo(
        name=item.get("Channel") or "",
        uniqueid=known(item.get("Uniqueid")),
        linkedid=known(item.get("Linkedid")),
        state=channel_state_name(code),
        state_code=code,
        caller_number=known(item.get("CallerIDNum")),
        caller_name=known(item.get("CallerIDName")),
        connected_number=known(item.get("ConnectedLineNum")),
        connected_name=known(item.get("ConnectedLineName")),
        context=known(item.get("Context")),
        exten=known(item.get("Exten")),
        priority=_opt_int(item.get("Priority")),
        application=known(item.get("Application")),
        application_data=known(item.get("Data")),
        duration_s=_opt_int(item.get("Seconds")),
        bridge_id=known(item.get("BridgeID")),
    )


# -- the service -------------------------------------------------------------


class CallControl:
    """The operations of ``/v1`` (each docstring names its AMI actions)."""

    def __init__(
        self,
        telephony: Telephony,
        registry: ChannelRegistry | None = None,
        idempotency: IdempotencyCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.telephony = telephony
        self.ami: AMIClient = telephony.ami
        self.registry = registry if registry is not None else ChannelRegistry()
        self.idempotency = idempotency if idempotency is not None else IdempotencyCache()
        self.clock = clock
        self.resyncs = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        telephony.observers.append(self)  # every call salara places, compat ones too

    # -- feeding the registry -------------------------------------------------

    def attach(self) -> None:
        """Feed the registry from the AMI client: every event, and a resync after each login."""
        self.ami.add_event_listener(self.on_event)
        self.ami.add_state_listener(self.on_ami_state)

    def on_event(self, event: Event) -> None:
        if event.name in HANDLED_EVENTS:
            self.registry.on_event(event, self.clock())

    def originating(self, linkedid: str, operator: str, phone: str, context: str) -> None:
        """:class:`~salara.service.CallObserver`: the call exists from before its Originate leaves."""
        self.registry.originated(linkedid, operator, phone, context, self.clock())

    def originated(self, linkedid: str, outcome: asyncio.Future[Event] | None) -> None:
        """:class:`~salara.service.CallObserver`: record the OriginateResponse when it comes."""
        if outcome is None:
            self.registry.forget(linkedid)
        else:
            outcome.add_done_callback(lambda done: self._originate_done(linkedid, done))

    def on_ami_state(self, ready: bool) -> None:
        if not ready:
            return
        task = asyncio.get_running_loop().create_task(self.resync(), name="calls-resync")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resync(self) -> list[str]:
        """AMI ``CoreShowChannels``: make the registry's live channels Asterisk's. Returns calls ended."""
        registry = self.registry
        registry.begin_resync()
        try:
            response = await self.ami.action("CoreShowChannels")
        except Exception as exc:
            registry.abort_resync()
            log.warning("active calls not resynchronised with Asterisk: %s", exc)
            return []
        ended = registry.resync(response.items, self.clock())
        self.resyncs += 1
        log.info(
            "active calls resynchronised: %d channels in %d calls; %d calls ended unseen",
            len(registry.channels),
            len(registry.active()),
            len(ended),
        )
        return ended

    # -- calls ------------------------------------------------------------------

    def call(self, call_id: str) -> Call:
        """A live or recently ended call; raises :class:`NotFound`."""
        call = self.registry.get(call_id, self.clock())
        if call is None:
            raise NotFound(f"no call {call_id} (unknown, or ended too long ago)", error="call_not_found")
        return call

    async def place(
        self,
        request: PlaceCall,
        idempotency_key: str | None = None,
        *,
        owner: str = "",
        admit: Callable[[], None] | None = None,
    ) -> tuple[Call, bool]:
        """Place a call (``ExtensionState`` then ``Originate``); ``(call, replayed)``.

        With ``idempotency_key``, the same key and request of the same
        ``owner`` within the window return the call placed first
        (``replayed`` true), never a second one. ``admit()`` runs right
        before a new call is placed, never for a replay (it spends the
        client's rate; it raises to refuse, and then nothing is placed and
        the key is free again). Raises :class:`Unprocessable`
        ``validation_failed`` for a variable outside ``[api]
        variable_prefix``, :class:`Conflict` ``operator_unavailable`` when
        the ``from`` extension's state is not in ``good_status`` (nothing
        placed), or ``idempotency_key_reused``.
        """
        refused = variable_problems(request.variables, self.telephony.config.api.variable_prefix)
        if refused:
            raise Unprocessable(
                f"variables may only be named {self.telephony.config.api.variable_prefix}...: {', '.join(refused)}",
                error="validation_failed",
                details={"variables": refused},
            )

        async def work() -> Call:
            if admit is not None:
                admit()
            return await self._place(request)

        if idempotency_key is None:
            return await work(), False
        fingerprint = repr(
            (
                request.from_,
                request.to,
                request.context,
                request.caller_id_name,
                sorted(request.variables.items()),
                request.timeout_s,
            )
        )
        return await self.idempotency.run(idempotency_key, fingerprint, self.clock(), work, scope=owner)

    async def _place(self, request: PlaceCall) -> Call:
        try:
            state, placed = await self.telephony.make_call(
                request.from_,
                request.to,
                request.context,
                caller_id_name=request.caller_id_name,
                variables=request.variables,
                timeout_s=request.timeout_s,
            )
        except AMIActionError as exc:
            if "does not exist" in exc.message.lower():
                raise Unprocessable(
                    f"{request.to}@{request.context} does not exist: the call was not placed",
                    error="no_such_extension",
                    details={"to": request.to, "context": request.context, "asterisk": exc.message},
                ) from None
            raise
        if placed is None:
            raise Conflict(
                f"extension {request.from_} is {state.text}: the call was not placed",
                error="operator_unavailable",
                details={"from": request.from_, "state": state.result, "state_text": state.text},
            )
        return self.call(placed.linkedid)

    def _originate_done(self, linkedid: str, done: asyncio.Future[Event]) -> None:
        now = self.clock()
        if done.cancelled():
            self.registry.originate_result(linkedid, None, None, now, error="the Originate was cancelled")
            return
        exc = done.exception()
        if exc is not None:
            error = f"Asterisk sent no OriginateResponse: {exc}"
            self.registry.originate_result(linkedid, None, None, now, error=error)
            return
        event = done.result()
        self.registry.originate_result(linkedid, event.get("Response"), _opt_int(event.get("Reason")), now)

    async def hangup(self, call_id: str) -> list[str]:
        """Hang up every live channel of a call (AMI ``Hangup``, cause 16); returns their names.

        Raises :class:`NotFound`, or :class:`Conflict` ``call_ended`` for an
        ended call or one with no channel yet.
        """
        call = self.call(call_id)
        if call.ended_at is not None:
            raise Conflict(f"call {call_id} has ended", error="call_ended")
        names = [channel.name for channel in call.channels.values()]
        if not names:
            raise Conflict(f"call {call_id} has no channel yet", error="call_not_connected")
        hung_up = []
        for name in names:
            hangup: dict[str, str | int] = {"Channel": name, "Cause": 16}
            response = await self.ami.action("Hangup", hangup, check=False)
            if response.ok:
                hung_up.append(name)
            else:  # gone meanwhile: its Hangup event is on its way
                log.info("hangup of %s: %s", name, response.message)
        return hung_up

    def transfer_channel(self, call: Call, channel: str | None) -> str:
        """The channel a transfer moves: ``channel`` if given (it must belong to the call).

        Otherwise, for a call salara placed, the called side (a live channel
        that is not the operator's own), else the first channel: the caller
        of an incoming call, or the operator's channel when the dialled
        extension runs on it (no second channel).
        """
        live = list(call.channels.values())
        if channel is not None:
            if not any(c.name == channel for c in live):
                raise NotFound(f"call {call.id} has no live channel {channel}", error="channel_not_found")
            return channel
        if call.origin is not None:
            others = [c for c in live if c.uniqueid != call.id and not c.name.startswith("Local/")]
            if others:
                return others[0].name
        first = next((c for c in live if c.uniqueid == call.id), None)
        return (first or live[0]).name

    async def transfer(self, call_id: str, exten: str, context: str, channel: str | None = None) -> str:
        """Blind transfer: AMI ``Redirect`` of the call's channel to ``exten@context`` priority 1.

        Returns the channel moved. Raises :class:`NotFound`, :class:`Conflict`
        (``call_ended``, ``call_not_connected``, ``transfer_refused`` with
        Asterisk's reason).
        """
        call = self.call(call_id)
        if call.ended_at is not None:
            raise Conflict(f"call {call_id} has ended", error="call_ended")
        if not call.channels:
            raise Conflict(f"call {call_id} has no channel yet", error="call_not_connected")
        name = self.transfer_channel(call, channel)
        try:
            redirect: dict[str, str | int] = {"Channel": name, "Exten": exten, "Context": context, "Priority": 1}
            await self.ami.action("Redirect", redirect)
        except AMIActionError as exc:
            raise Conflict(
                f"Asterisk refused the transfer: {exc.message}",
                error="transfer_refused",
                details={"channel": name, "asterisk": exc.message},
            ) from None
        log.info("call %s: %s transferred to %s@%s", call_id, name, exten, context)
        return name

    # -- messages and states ------------------------------------------------------

    async def message(self, to: str, from_: str, text: str, context: str) -> str | None:
        """SIP MESSAGE to ``to`` from ``from_`` (``ExtensionState``, then ``MessageSend``).

        Returns None when Asterisk accepted it, else Asterisk's reason. Raises
        :class:`Conflict` ``operator_unavailable`` when ``to`` is not in a good state.
        """
        telephony = self.telephony
        state = await telephony.extension_state(to, context)
        if not telephony.is_good(state):
            raise Conflict(
                f"extension {to} is {state.text}: the message was not sent",
                error="operator_unavailable",
                details={"to": to, "state": state.result, "state_text": state.text},
            )
        return await telephony.message_send(to, from_, text)

    async def extension(self, exten: str, context: str) -> ExtensionInfo:
        """AMI ``ExtensionState``; :class:`NotFound` for no such extension or no hint (state -1)."""
        response = await self.ami.action("ExtensionState", {"Exten": exten, "Context": context})
        code = _opt_int(response.get("Status"))
        if code is None or code == -1:
            raise NotFound(f"no hint for {exten}@{context} (no such extension, or it has no hint)")
        return ExtensionInfo(
            exten,
            context,
            known(response.get("Hint")),
            code,
            extension_state_name(code),
            code in self.telephony.config.url.good_status,
        )

    async def endpoint(self, name: str) -> EndpointInfo:
        """AMI ``PJSIPShowEndpoint`` normalised; :class:`NotFound` for an unknown endpoint."""
        response = await self.ami.action("PJSIPShowEndpoint", {"Endpoint": name}, check=False)
        if not response.ok:
            raise NotFound(f"no PJSIP endpoint {name}", details={"asterisk": response.message})
        return endpoint_of(name, response.events)

    async def channel(self, name: str) -> ChannelInfo:
        """AMI ``Status`` of one channel (by name or Uniqueid); :class:`NotFound` when absent."""
        response = await self.ami.action("Status", {"Channel": name}, check=False)
        items = [event for event in response.items if event.name == "Status"]
        if not response.ok or not items:
            raise NotFound(f"no channel {name}")
        return channel_of(items[0])
