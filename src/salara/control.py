"""Call control: placing calls, hanging them up, transferring them, sending messages.

The one service behind the compat API's make call and send message and
behind ``/v1``'s call resources. A call it places is announced to the call
registry before its ``Originate`` leaves (so it exists from that moment,
with its two parties), tracked for CRM events when ``[event] watch_makecall``
is on, and given its ``OriginateResponse`` when it comes.

Errors: :class:`~salara.errors.NotFound`, :class:`~salara.errors.Conflict`
and :class:`~salara.errors.Unprocessable` (with a stable ``error`` id) for
what the caller asked; the AMI errors of :mod:`salara.pbx` otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from salara.ami.client import AMIClient
from salara.ami.messages import Event
from salara.calls.call import Call
from salara.calls.recording import RecordingError, mixmonitor_file
from salara.calls.tracking import CallTracker
from salara.calls.visibility import EVERYONE, Viewer, sees
from salara.config import Config
from salara.errors import AMIActionError, Conflict, NotFound, Unprocessable
from salara.fields import variable_problems
from salara.idempotency import IdempotencyCache, KeyStore, Shared, call_record, placed_call
from salara.pbx import PBX, ExtensionInfo, new_channel_id
from salara.recordings.files import RecordingFiles
from salara.sites import Sites

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlaceCall:
    """What ``POST /v1/calls`` (or a compat make call) asks for; every value already validated (``salara.fields``)."""

    from_: str
    to: str
    context: str
    caller_id_name: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    """Ring timeout of the operator's device, seconds (default ``[event] timeout_makecall``)."""
    owner: str = ""
    """Who asks (a token's name): the call is theirs to see and control."""
    client_state: str | None = None
    """Echoed on every lifecycle event of the call (at most 1,024 bytes of UTF-8, checked by the API)."""
    record: bool | None = None
    """Record the call (``MixMonitor``, :mod:`salara.recordings.recorder`); None: ``[recordings] record_calls``."""
    pbx: str | None = None
    """The PBX to place it on (an ``[ami NAME]``); None: the one serving ``context`` (:mod:`salara.sites`)."""


def _opt_int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


class CallControl:
    """Calls as resources over one :class:`~salara.pbx.PBX` and the call model (each docstring names its actions)."""

    def __init__(
        self,
        pbx: PBX,
        tracker: CallTracker,
        config: Config,
        idempotency: IdempotencyCache | None = None,
        *,
        sites: Sites | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pbx = pbx
        """The ``default`` PBX's operations."""
        self.sites = sites if sites is not None else Sites.single(pbx, config.ami)
        """Every PBX, and which serves a context or a call (:mod:`salara.sites`)."""
        self.tracker = tracker
        self.registry = tracker.registry
        self.config = config
        self.idempotency = idempotency if idempotency is not None else IdempotencyCache()
        self.shared_keys: KeyStore | None = None
        """Where every node finds the keys (nodes on one PostgreSQL store); None: this node's only."""
        self.role: Callable[[], str] = lambda: "leader"
        """This node's role now, ``leader`` or ``follower`` (:mod:`salara.nodes`; one node on SQLite: leader)."""
        self.clock = clock
        self.monotonic = monotonic
        self.recordings = RecordingFiles(lambda: self.config)
        """The recording files (``GET /v1/recordings``), with the config in use."""

    @classmethod
    def over(cls, ami: AMIClient, config: Config) -> CallControl:
        """A call control with its own PBX façade and call model over ``ami`` (the CLI, tests)."""
        return cls(PBX(ami, config.url.good_status), CallTracker(config.event), config)

    # -- calls ------------------------------------------------------------------

    def call(self, call_id: str, viewer: Viewer = EVERYONE) -> Call:
        """A live or recently ended call ``viewer`` may see (:mod:`salara.calls.visibility`).

        Raises :class:`~salara.errors.NotFound` ``call_not_found`` for an
        unknown call and for one of somebody else (its existence is not told).
        """
        call = self.registry.get(call_id, self.monotonic())
        if call is None or not sees(viewer, call):
            raise NotFound(f"no call {call_id} (unknown, or ended too long ago)", error="call_not_found")
        return call

    def calls(self, viewer: Viewer = EVERYONE) -> list[Call]:
        """The active calls ``viewer`` may see, oldest first."""
        return [call for call in self.registry.active() if sees(viewer, call)]

    def sees_call(self, viewer: Viewer, call_id: str) -> bool:
        """Whether ``viewer`` may see the live or recently ended call ``call_id`` (False for an unknown one)."""
        if viewer.sees_all:
            return True
        call = self.registry.get(call_id, self.monotonic())
        return call is not None and sees(viewer, call)

    async def make_call(self, request: PlaceCall) -> tuple[ExtensionInfo, Call | None]:
        """Click-to-call: ring the operator's device, then dial ``to`` in ``context``.

        Checks the operator's extension state first (``ExtensionState``); only
        when it is good sends ``Originate`` (Async) of
        ``<operator_technology>/<from>`` to ``to@context`` priority 1,
        CallerID ``"<caller_id_name or from>" <from>``, one ``Variable:
        NAME=value`` per variable, ring timeout ``timeout_s``. Returns the
        state and, when placed, the call (its id is the Linkedid salara chose,
        ``NAME:`` before it on a PBX but ``default``). The PBX is
        ``request.pbx``, else the one serving ``context`` (raises
        :class:`~salara.errors.Unprocessable` ``unknown_pbx``).
        """
        operator, phone, context = request.from_, request.to, request.context
        site = self.sites.serving(context, request.pbx)
        pbx = site.pbx
        state = await pbx.extension_state(operator, context)
        if not state.available:
            log.info("make call %s -> %s refused: operator is %s", operator, phone, state.state_text)
            return state, None
        config = self.config
        channel_id = new_channel_id()
        linkedid = site.space.id(channel_id)
        ring_s = config.event.timeout_makecall if request.timeout_s is None else request.timeout_s
        fields: list[tuple[str, str | int]] = [
            ("Channel", f"{config.general.operator_technology}/{operator}"),
            ("Context", context),
            ("Exten", phone),
            ("Priority", 1),
            ("CallerID", f'"{request.caller_id_name or operator}" <{operator}>'),
            ("Timeout", int(ring_s * 1000)),
            ("ChannelId", channel_id),
        ]
        fields += [("Variable", f"{name}={value}") for name, value in request.variables.items()]
        wall, mono = self.clock(), self.monotonic()
        # Known before the Originate leaves, so its first Newchannel counts.
        call = self.registry.originated(
            linkedid, operator, phone, context, wall, owner=request.owner, client_state=request.client_state
        )
        if config.recordings.record_calls if request.record is None else request.record:
            try:
                call.recording = mixmonitor_file(linkedid, config.recordings.format)  # started at its first channel
            except RecordingError:  # a PBX but default's: its files are on that PBX, out of salara's reach
                log.warning("call %s on PBX %s not recorded: its recordings are not salara's", linkedid, site.name)
        tracked = config.event.watch_makecall
        if tracked:
            self.tracker.track(linkedid, operator, phone, "makecall", wall, mono)
        try:
            outcome = await pbx.originate(fields, timeout_s=ring_s + 30)
        except BaseException:
            self.registry.forget(linkedid)
            if tracked:
                self.tracker.forget(linkedid)
            raise
        outcome.add_done_callback(lambda done: self._originate_done(linkedid, tracked, done))
        log.info("make call %s -> %s@%s queued (call %s)", operator, phone, context, linkedid)
        return state, call

    def _originate_done(self, linkedid: str, tracked: bool, done: asyncio.Future[Event]) -> None:
        wall, mono = self.clock(), self.monotonic()
        failed = True
        if done.cancelled():
            self.registry.originate_result(linkedid, None, None, wall, mono, error="the Originate was cancelled")
        elif (exc := done.exception()) is not None:
            error = f"Asterisk sent no OriginateResponse: {exc}"
            self.registry.originate_result(linkedid, None, None, wall, mono, error=error)
        else:
            event = done.result()
            response = event.get("Response")
            failed = response == "Failure"
            self.registry.originate_result(linkedid, response, _opt_int(event.get("Reason")), wall, mono)
        # A failed Originate that created no channel will send no Hangup: stop tracking it.
        if tracked and failed and linkedid in self.tracker.calls and not self.registry.live_channels(linkedid):
            self.tracker.forget(linkedid)

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
        the key is free again). Raises :class:`~salara.errors.Unprocessable`
        ``validation_failed`` for a variable outside ``[api] variable_prefix``
        or ``no_such_extension``, :class:`~salara.errors.Conflict`
        ``operator_unavailable`` when the ``from`` extension's state is not in
        ``good_status`` (nothing placed), or ``idempotency_key_reused``.
        """
        prefix = self.config.api.variable_prefix
        refused = variable_problems(request.variables, prefix)
        if refused:
            raise Unprocessable(
                f"variables may only be named {prefix}...: {', '.join(refused)}",
                error="validation_failed",
                details={"variables": refused},
            )

        async def work() -> Call:
            if admit is not None:
                admit()
            return await self._place(request)

        if idempotency_key is None:
            return await work(), False
        site = self.sites.serving(request.context, request.pbx)  # the same key on another PBX is another call
        fingerprint = repr(
            (
                request.from_,
                request.to,
                request.context,
                request.caller_id_name,
                sorted(request.variables.items()),
                request.timeout_s,
            )
            + ((request.client_state,) if request.client_state is not None else ())  # keys kept before it existed
            + ((("record", request.record),) if request.record is not None else ())
            + ((("pbx", site.name),) if site is not self.sites.default else ())
        )
        shared = None
        if self.shared_keys is not None:

            def decode(record: bytes) -> Call:
                return placed_call(record, self.registry, self.monotonic())

            shared = Shared(self.shared_keys, call_record, decode, self.clock())
        return await self.idempotency.run(idempotency_key, fingerprint, self.monotonic(), work, owner, shared)

    async def _place(self, request: PlaceCall) -> Call:
        try:
            state, call = await self.make_call(request)
        except AMIActionError as exc:
            if "does not exist" in exc.message.lower():
                raise Unprocessable(
                    f"{request.to}@{request.context} does not exist: the call was not placed",
                    error="no_such_extension",
                    details={"to": request.to, "context": request.context, "asterisk": exc.message},
                ) from None
            raise
        if call is None:
            raise Conflict(
                f"extension {request.from_} is {state.state_text}: the call was not placed",
                error="operator_unavailable",
                details={"from": request.from_, "state": state.state, "state_text": state.state_text},
            )
        return call

    async def hangup(self, call_id: str, viewer: Viewer = EVERYONE) -> list[str]:
        """Hang up every live channel of a call (AMI ``Hangup``, cause 16); returns their names.

        Raises :class:`~salara.errors.NotFound`, or :class:`~salara.errors.Conflict`
        ``call_ended`` for an ended call, ``call_not_connected`` for one with no channel yet.
        """
        call = self.call(call_id, viewer)
        if call.ended_at is not None:
            raise Conflict(f"call {call_id} has ended", error="call_ended")
        names = [channel.name for channel in call.channels.values()]
        if not names:
            raise Conflict(f"call {call_id} has no channel yet", error="call_not_connected")
        self.registry.hangup_requested(call.id)
        pbx = self.sites.of_call(call.id).pbx
        hung_up = []
        for name in names:
            refused = await pbx.hangup(name)
            if refused is None:
                hung_up.append(name)
            else:  # gone meanwhile: its Hangup event is on its way
                log.info("hangup of %s: %s", name, refused)
        return hung_up

    @staticmethod
    def transfer_channel(call: Call, channel: str | None) -> str:
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

    async def transfer(
        self, call_id: str, exten: str, context: str, channel: str | None = None, viewer: Viewer = EVERYONE
    ) -> str:
        """Blind transfer: AMI ``Redirect`` of the call's channel to ``exten@context`` priority 1.

        Returns the channel moved. Raises :class:`~salara.errors.NotFound`,
        :class:`~salara.errors.Conflict` (``call_ended``, ``call_not_connected``,
        ``transfer_refused`` with Asterisk's reason).
        """
        call = self.call(call_id, viewer)
        if call.ended_at is not None:
            raise Conflict(f"call {call_id} has ended", error="call_ended")
        if not call.channels:
            raise Conflict(f"call {call_id} has no channel yet", error="call_not_connected")
        name = self.transfer_channel(call, channel)
        try:
            await self.sites.of_call(call.id).pbx.redirect(name, exten, context)
        except AMIActionError as exc:
            raise Conflict(
                f"Asterisk refused the transfer: {exc.message}",
                error="transfer_refused",
                details={"channel": name, "asterisk": exc.message},
            ) from None
        self.registry.redirected(call.id, name, exten, context, self.clock())
        log.info("call %s: %s transferred to %s@%s", call_id, name, exten, context)
        return name

    # -- messages -----------------------------------------------------------------

    async def send_message(
        self, to: str, from_: str, text: str, context: str, pbx: str | None = None
    ) -> tuple[ExtensionInfo, str | None]:
        """SIP MESSAGE to ``to`` from ``from_`` when ``to``'s state is good (``ExtensionState``, ``MessageSend``).

        Returns the state and None when Asterisk accepted the message, else
        why not (the state, or Asterisk's reason). On the PBX ``pbx``, else
        the one serving ``context``.
        """
        target = self.sites.serving(context, pbx).pbx
        state = await target.extension_state(to, context)
        if not state.available:
            log.info("message to %s refused: operator is %s", to, state.state_text)
            return state, f"extension {to} is {state.state_text}"
        return state, await target.message_send(to, from_, text)

    async def message(self, to: str, from_: str, text: str, context: str, pbx: str | None = None) -> str | None:
        """:meth:`send_message` for ``/v1``: None when accepted, else Asterisk's reason.

        Raises :class:`~salara.errors.Conflict` ``operator_unavailable`` when ``to`` is not in a good state.
        """
        state, refused = await self.send_message(to, from_, text, context, pbx)
        if not state.available:
            raise Conflict(
                f"extension {to} is {state.state_text}: the message was not sent",
                error="operator_unavailable",
                details={"to": to, "state": state.state, "state_text": state.state_text},
            )
        return refused

    # -- states (``/v1`` reads them through the call control) -------------------

    async def extension(self, exten: str, context: str, pbx: str | None = None) -> ExtensionInfo:
        """AMI ``ExtensionState`` on ``pbx``, else the PBX serving ``context``.

        Raises :class:`~salara.errors.NotFound` for no such extension or no hint (state -1).
        """
        info = await self.sites.serving(context, pbx).pbx.extension_state(exten, context)
        if info.state == -1:
            raise NotFound(f"no hint for {exten}@{context} (no such extension, or it has no hint)")
        return info
