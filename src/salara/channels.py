"""Active calls as Asterisk reports them: channels grouped by Linkedid, and how calls ended.

A pure fold of AMI events (no I/O, no clock: times are Unix seconds passed
in) behind ``GET /v1/calls``:

- ``Newchannel`` adds a channel (name, state, caller, context, extension) to
  the call of its ``Linkedid``; ``Newstate``, ``NewCallerid`` and
  ``NewConnectedLine`` update it; ``Hangup`` removes it and records its
  ``Cause``/``Cause-txt``. A call ends when its last channel hangs up.
- :meth:`ChannelRegistry.resync` replaces what is known with the channels of
  AMI ``CoreShowChannels`` after every (re)connect, keeping what changed
  while the list was on its way (:meth:`ChannelRegistry.begin_resync`).
- Calls salara originates are announced first (:meth:`ChannelRegistry.originated`),
  so they exist from the moment the ``Originate`` leaves, carry their two
  parties, and end with the ``OriginateResponse`` ``Reason``
  (:meth:`ChannelRegistry.originate_result`) when no channel ever appeared.

Outcome of an ended call (:class:`Outcome`): ``answered``, ``busy``,
``no_answer``, ``failed`` or ``unknown``.

- A call salara originated has two legs: the operator's channel rings
  first (its result is the ``OriginateResponse`` ``Reason``, Asterisk's
  ``AST_CONTROL_*`` code of that leg: 0 failure, 1 hung up, 3 ring timeout,
  4 answered, 5 busy, 8 congestion; :attr:`Outcome.operator`), then the
  dialplan runs on it to reach the called side. The call's own result is
  the called side's: ``answered`` only when another channel of the call
  was answered, the Dial status (``DIALSTATUS`` or ``DialEnd``) said
  ``ANSWER``, or the dialplan answered the call itself (``Answer()`` on the
  operator's channel, as an IVR or a simulated extension does); otherwise
  from the Dial status (``BUSY`` busy; ``NOANSWER``, ``CANCEL`` no answer;
  ``CHANUNAVAIL``, ``CONGESTION``... failed), else from the Hangup cause
  of the called side's channel, else of the operator's. When the operator
  never answered, the call never got further: its result is the
  operator's.
- Any other call: whether a channel was ever Up, else the Hangup cause (17
  busy; 18, 19 no answer; 16 caller gave up while ringing: no answer).

Bounded: at most ``max_channels`` live channels (the oldest call is dropped
beyond it, counted in :attr:`ChannelRegistry.evicted`) and at most
``max_ended`` ended calls, each kept ``ended_ttl_s`` seconds.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from salara.ami.messages import Event

OutcomeResult = Literal["answered", "busy", "no_answer", "failed", "unknown"]
CallState = Literal["dialing", "ringing", "up", "ended"]

UP: Final = 6
RINGING_STATES: Final = frozenset({4, 5})  # AST_STATE_RING, AST_STATE_RINGING

ORIGINATE_REASONS: Final[dict[int, str]] = {
    0: "failed (no such channel or endpoint, not registered, or no route)",
    1: "hung up before answering",
    2: "local ring",
    3: "no answer (ring timeout)",
    4: "answered",
    5: "busy",
    8: "congestion",
}
"""``OriginateResponse`` ``Reason`` (``enum ast_control_frame_type`` of the first leg) -> text."""

_REASON_RESULT: Final[dict[int, OutcomeResult]] = {4: "answered", 5: "busy", 3: "no_answer"}
_CAUSE_RESULT: Final[dict[int, OutcomeResult]] = {17: "busy", 18: "no_answer", 19: "no_answer", 16: "no_answer"}
"""Hangup cause (Q.850) -> outcome, for calls never answered."""
_DIAL_RESULT: Final[dict[str, OutcomeResult]] = {
    "ANSWER": "answered",
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "CANCEL": "no_answer",
}
"""Dial's ``DIALSTATUS`` -> outcome; any other (``CHANUNAVAIL``, ``CONGESTION``...) is ``failed``."""

HANDLED_EVENTS: Final = frozenset(
    {"Newchannel", "Newstate", "NewCallerid", "NewConnectedLine", "Hangup", "Newexten", "VarSet", "DialEnd"}
)

MAX_CHANNELS: Final = 50_000
MAX_ENDED: Final = 1_000
ENDED_TTL_S: Final = 3_600.0


def known(value: str | None) -> str | None:
    """An AMI party field, or None for Asterisk's placeholders (empty, ``<unknown>``)."""
    if value is None or value in ("", "<unknown>", "<Unknown>"):
        return None
    return value


def originate_reason_text(code: int) -> str:
    """Text of an ``OriginateResponse`` ``Reason`` code."""
    return ORIGINATE_REASONS.get(code, f"reason {code}")


def parse_duration_s(text: str | None) -> float:
    """``CoreShowChannel`` ``Duration`` (``HH:MM:SS``) in seconds; 0 when unreadable."""
    try:
        hours, minutes, seconds = (int(part) for part in (text or "").split(":"))
    except ValueError:
        return 0.0
    return float(hours * 3600 + minutes * 60 + seconds)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@dataclass(slots=True)
class Channel:
    """One live channel. Times are Unix seconds."""

    uniqueid: str
    linkedid: str
    name: str
    state: int
    created_at: float
    caller_number: str | None = None
    caller_name: str | None = None
    connected_number: str | None = None
    connected_name: str | None = None
    context: str | None = None
    exten: str | None = None
    answered_at: float | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """A call salara originated: ``from`` rang first, then ``to`` was dialled in ``context``."""

    from_: str
    to: str
    context: str


@dataclass(frozen=True, slots=True)
class LegOutcome:
    """How the operator's leg of a call salara placed went: its ``OriginateResponse``."""

    result: OutcomeResult
    reason: str
    originate_reason: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an ended call ended (its called side, for a call salara placed), with the reasons Asterisk gave."""

    result: OutcomeResult
    reason: str
    originate_reason: int | None = None
    """The ``OriginateResponse`` ``Reason`` of a call salara placed (its operator's leg)."""
    hangup_cause: int | None = None
    hangup_cause_text: str | None = None
    dial_status: str | None = None
    """The last ``DIALSTATUS`` of the call's Dial, when it ran one."""
    operator: LegOutcome | None = None
    """For a call salara placed: how its operator's leg went."""


@dataclass(slots=True)
class Call:
    """A call: its channels (live ones only), parties and, once ended, its outcome."""

    id: str
    """The Linkedid every channel of the call shares."""
    created_at: float
    origin: Origin | None = None
    channels: dict[str, Channel] = field(default_factory=dict)
    """Live channels by Uniqueid, in creation order."""
    first: Channel | None = None
    """The call's first channel seen (kept after it hung up): the caller's side."""
    answered_at: float | None = None
    ended_at: float | None = None
    hangup_cause: int | None = None
    hangup_cause_text: str | None = None
    originate_pending: bool = False
    originate_response: str | None = None
    originate_reason: int | None = None
    originate_error: str | None = None
    outcome: Outcome | None = None
    operator_answered_at: float | None = None
    """A call salara placed: when the operator's channel was answered (:attr:`answered_at` is the called side's)."""
    answered_by: str | None = None
    """What showed the called side answered: a channel's name, ``Dial ANSWER``, ``Answer()``."""
    dial_status: str | None = None
    called_cause: int | None = None
    """Hangup cause of the first channel of the called side (not the operator's) that gave one."""
    called_cause_text: str | None = None

    @property
    def state(self) -> CallState:
        """``ended``; else ``up`` if a channel is Up, ``ringing`` if one rings, else ``dialing``.

        For a call salara placed, ``up`` once its called side answered: while
        only the operator has answered, the call is ``ringing``.
        """
        if self.ended_at is not None:
            return "ended"
        states = {channel.state for channel in self.channels.values()}
        if self.origin is not None:
            if self.answered_at is not None:
                return "up"
            return "ringing" if self.operator_answered_at is not None or states & RINGING_STATES else "dialing"
        if UP in states:
            return "up"
        if states & RINGING_STATES:
            return "ringing"
        return "dialing"

    @property
    def from_(self) -> str | None:
        """The calling party: the operator of a call salara placed, else the first channel's caller."""
        if self.origin is not None:
            return self.origin.from_
        return self.first.caller_number if self.first is not None else None

    @property
    def to(self) -> str | None:
        """The called party: the phone of a call salara placed, else the first channel's extension."""
        if self.origin is not None:
            return self.origin.to
        if self.first is None:
            return None
        if self.first.exten not in (None, "s"):
            return self.first.exten
        return self.first.connected_number

    @property
    def context(self) -> str | None:
        if self.origin is not None:
            return self.origin.context
        return self.first.context if self.first is not None else None


def _cause_words(cause: int | None, text: str | None) -> str:
    return f"Hangup cause {cause} ({text or '?'})"


def operator_outcome(call: Call) -> LegOutcome:
    """How the operator's leg of a call salara placed went: its ``OriginateResponse``, else what was seen."""
    code = call.originate_reason
    if code is not None:
        reason = f"OriginateResponse {call.originate_response or '?'}, Reason {code}: {originate_reason_text(code)}"
        return LegOutcome(_REASON_RESULT.get(code, "failed"), reason, code)
    if call.operator_answered_at is not None:
        return LegOutcome("answered", "the operator's channel was answered; OriginateResponse not seen")
    return LegOutcome("unknown", call.originate_error or "OriginateResponse not seen")


def _placed_outcome(call: Call) -> Outcome:
    operator = operator_outcome(call)
    cause, cause_text = call.hangup_cause, call.hangup_cause_text
    dial = call.dial_status
    details = [f"Dial {dial}"] if dial else []
    if cause is not None:
        details.append(_cause_words(cause, cause_text))
    if call.called_cause is not None and (call.called_cause, call.called_cause_text) != (cause, cause_text):
        details.append("called side's " + _cause_words(call.called_cause, call.called_cause_text))
    result: OutcomeResult
    if operator.result != "answered":
        result, what = operator.result, "the operator's leg did not answer"
    elif call.answered_at is not None:
        result, what = "answered", f"answered ({call.answered_by or '?'})"
    elif dial:
        result, what = _DIAL_RESULT.get(dial, "failed"), "not answered"
    elif call.called_cause is not None:
        result, what = _CAUSE_RESULT.get(call.called_cause, "failed"), "not answered"
    elif cause is not None:
        result, what = _CAUSE_RESULT.get(cause, "failed"), "not answered"
    else:
        result, what = "unknown", "the call ended while salara was not connected to Asterisk"
    reason = "; ".join([what, *details, f"operator: {operator.reason}"])
    return Outcome(result, reason, call.originate_reason, cause, cause_text, dial, operator)


def outcome_of(call: Call) -> Outcome:
    """The outcome of an ended call (see the module's docstring)."""
    if call.origin is not None:
        return _placed_outcome(call)
    cause, cause_text = call.hangup_cause, call.hangup_cause_text
    reason_code = call.originate_reason
    if reason_code is not None:
        result = _REASON_RESULT.get(reason_code, "failed")
        reason = f"OriginateResponse {call.originate_response or '?'}, Reason {reason_code}: "
        reason += originate_reason_text(reason_code)
        if cause is not None:
            reason += f"; Hangup cause {cause} ({cause_text or '?'})"
        return Outcome(result, reason, reason_code, cause, cause_text)
    if call.answered_at is not None:
        result = "answered"
    elif cause is not None:
        result = _CAUSE_RESULT.get(cause, "failed")
    elif call.originate_error is not None:
        return Outcome("unknown", call.originate_error)
    else:
        return Outcome("unknown", "the call ended while salara was not connected to Asterisk")
    if cause is None:
        return Outcome(result, "answered; Hangup not seen", None, None, None)
    return Outcome(result, f"Hangup cause {cause} ({cause_text or '?'})", None, cause, cause_text)


class ChannelRegistry:
    """Live channels by Uniqueid, grouped into calls by Linkedid; recently ended calls.

    Feed it every AMI event with :meth:`on_event` (events it does not use are
    ignored at the cost of a set lookup).
    """

    def __init__(
        self,
        *,
        max_channels: int = MAX_CHANNELS,
        max_ended: int = MAX_ENDED,
        ended_ttl_s: float = ENDED_TTL_S,
    ) -> None:
        self.max_channels = max_channels
        self.max_ended = max_ended
        self.ended_ttl_s = ended_ttl_s
        self.calls: dict[str, Call] = {}
        """Live calls (and calls salara originated that have no channel yet), by id."""
        self.ended: OrderedDict[str, Call] = OrderedDict()
        """Ended calls, oldest first."""
        self.channels: dict[str, Channel] = {}
        """Every live channel by Uniqueid."""
        self.outcomes: Counter[str] = Counter()
        """Ended calls by outcome, for metrics."""
        self.originated_count = 0
        self.evicted = 0
        """Calls dropped because :attr:`max_channels` was reached."""
        self._resync: tuple[set[str], set[str]] | None = None

    # -- lookups ----------------------------------------------------------------

    def get(self, call_id: str, now: float) -> Call | None:
        """A live or recently ended call."""
        call = self.calls.get(call_id)
        if call is not None:
            return call
        self.prune(now)
        return self.ended.get(call_id)

    def active(self) -> list[Call]:
        """Live calls that have at least one channel, oldest first."""
        return [call for call in self.calls.values() if call.channels]

    def channel_by_name(self, name: str) -> Channel | None:
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        return None

    # -- calls salara places --------------------------------------------------

    def originated(self, call_id: str, from_: str, to: str, context: str, now: float) -> Call:
        """Announce a call salara is about to originate with ``ChannelId`` ``call_id``."""
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = Call(call_id, now)
        call.origin = Origin(from_, to, context)
        call.originate_pending = True
        self.originated_count += 1
        return call

    def forget(self, call_id: str) -> None:
        """Drop an announced call whose Originate never left (AMI refused it or was down)."""
        call = self.calls.get(call_id)
        if call is not None and not call.channels:
            del self.calls[call_id]

    def originate_result(
        self, call_id: str, response: str | None, reason: int | None, now: float, error: str | None = None
    ) -> None:
        """Record the ``OriginateResponse`` of a call salara placed.

        ``response`` is ``Success`` or ``Failure`` and ``reason`` its
        ``Reason`` code; both None with ``error`` when no answer came (AMI
        link lost, timeout). A call with no live channel ends now; an
        already ended one gets its outcome recomputed.
        """
        call = self.calls.get(call_id) or self.ended.get(call_id)
        if call is None:
            return
        call.originate_pending = False
        call.originate_response = response
        call.originate_reason = reason
        call.originate_error = error
        if call.ended_at is not None:
            previous = call.outcome
            call.outcome = outcome_of(call)
            if previous is not None and previous.result != call.outcome.result:
                self.outcomes[previous.result] -= 1
                self.outcomes[call.outcome.result] += 1
        elif not call.channels:
            self._end(call, now)

    # -- events -------------------------------------------------------------------

    def on_event(self, event: Event, now: float) -> None:
        """Fold one AMI event received at ``now``."""
        name = event.name
        if name not in HANDLED_EVENTS:
            return
        uniqueid = event.get("Uniqueid")
        if not uniqueid:
            return
        if name == "Newchannel":
            self._newchannel(uniqueid, event, now)
            return
        channel = self.channels.get(uniqueid)
        if name == "Hangup":
            self._hangup(uniqueid, channel, event, now)
        elif channel is None:
            return
        elif name == "Newstate":
            self._set_state(channel, _int(event.get("ChannelState"), channel.state), now)
            channel.name = event.get("Channel") or channel.name
        elif name == "NewCallerid":
            channel.caller_number = known(event.get("CallerIDNum"))
            channel.caller_name = known(event.get("CallerIDName"))
        elif name == "NewConnectedLine":
            channel.connected_number = known(event.get("ConnectedLineNum"))
            channel.connected_name = known(event.get("ConnectedLineName"))
        else:
            self._called_side(channel, event, now)

    def _called_side(self, channel: Channel, event: Event, now: float) -> None:
        """What a ``Newexten``, ``VarSet`` or ``DialEnd`` says of the called side of a call salara placed."""
        call = self.calls.get(channel.linkedid)
        if call is None or call.origin is None:
            return
        name = event.name
        if name == "Newexten":
            # The dialplan runs on the operator's channel once it answered; Answer() there is the
            # called side (an IVR, a simulated extension) answering the call itself.
            if event.get("Application") == "Answer" and channel.uniqueid == call.id and channel.state == UP:
                self._called_answered(call, now, "Answer()")
            return
        if name == "VarSet":
            if event.get("Variable") != "DIALSTATUS":
                return
            status = event.get("Value") or ""
        else:
            status = event.get("DialStatus") or ""
        if status:
            call.dial_status = status
            if status == "ANSWER":
                self._called_answered(call, now, "Dial ANSWER")

    @staticmethod
    def _called_answered(call: Call, now: float, by: str) -> None:
        if call.answered_at is None:
            call.answered_at = now
            call.answered_by = by

    def _newchannel(self, uniqueid: str, event: Event, now: float, created_at: float | None = None) -> Channel:
        linkedid = event.get("Linkedid") or uniqueid
        channel = Channel(
            uniqueid,
            linkedid,
            event.get("Channel") or "",
            _int(event.get("ChannelState"), 0),
            now if created_at is None else created_at,
            known(event.get("CallerIDNum")),
            known(event.get("CallerIDName")),
            known(event.get("ConnectedLineNum")),
            known(event.get("ConnectedLineName")),
            known(event.get("Context")),
            known(event.get("Exten")),
        )
        self._add(channel, now)
        if self._resync is not None:
            self._resync[0].add(uniqueid)
        return channel

    def _add(self, channel: Channel, now: float) -> None:
        call = self.calls.get(channel.linkedid)
        if call is None:
            call = self.ended.pop(channel.linkedid, None)  # a late channel revives its call
            if call is not None:
                self.outcomes[call.outcome.result if call.outcome else "unknown"] -= 1
                call.ended_at = call.outcome = None
            else:
                call = Call(channel.linkedid, channel.created_at)
            self.calls[channel.linkedid] = call
        old = self.channels.pop(channel.uniqueid, None)
        if old is not None:
            call.channels.pop(old.uniqueid, None)
        call.channels[channel.uniqueid] = channel
        self.channels[channel.uniqueid] = channel
        if call.first is None or channel.uniqueid == call.id:
            call.first = channel
        if channel.state == UP:
            self._set_state(channel, UP, channel.created_at)
        while len(self.channels) > self.max_channels:
            self._evict_oldest(now)

    def _evict_oldest(self, now: float) -> None:
        for call in self.calls.values():
            if call.channels:
                for uniqueid in call.channels:
                    self.channels.pop(uniqueid, None)
                call.channels.clear()
                self.evicted += 1
                self._end(call, now)
                return

    def _set_state(self, channel: Channel, state: int, now: float) -> None:
        channel.state = state
        if state == UP and channel.answered_at is None:
            channel.answered_at = now
            call = self.calls.get(channel.linkedid)
            if call is None:
                return
            if call.origin is not None and channel.uniqueid == call.id:
                if call.operator_answered_at is None:
                    call.operator_answered_at = now  # the operator's leg; the call is answered by the called side
            elif call.answered_at is None:
                call.answered_at = now
                call.answered_by = channel.name

    def _hangup(self, uniqueid: str, channel: Channel | None, event: Event, now: float) -> None:
        if self._resync is not None:
            self._resync[1].add(uniqueid)
        linkedid = channel.linkedid if channel is not None else event.get("Linkedid") or uniqueid
        call = self.calls.get(linkedid)
        if call is None:
            return
        cause = _int(event.get("Cause"), -1)
        # The first channel's cause tells best why the call ended; else the first one given; 0 says nothing.
        if cause >= 0 and (call.hangup_cause in (None, 0) or (uniqueid == call.id and cause != 0)):
            call.hangup_cause = cause
            call.hangup_cause_text = event.get("Cause-txt")
        # For a call salara placed, the called side's own cause (a channel Dial created, not the operator's).
        if call.origin is not None and uniqueid != call.id and cause > 0 and call.called_cause is None:
            call.called_cause = cause
            call.called_cause_text = event.get("Cause-txt")
        if channel is not None:
            del self.channels[uniqueid]
            call.channels.pop(uniqueid, None)
        if not call.channels and not call.originate_pending:
            self._end(call, now)

    def _end(self, call: Call, now: float) -> None:
        self.calls.pop(call.id, None)
        call.ended_at = now
        call.originate_pending = False
        call.outcome = outcome_of(call)
        self.outcomes[call.outcome.result] += 1
        self.ended[call.id] = call
        self.ended.move_to_end(call.id)
        self.prune(now)

    def prune(self, now: float) -> None:
        """Forget ended calls beyond the count bound or older than the time bound."""
        ended = self.ended
        while ended:
            oldest = next(iter(ended.values()))
            if len(ended) <= self.max_ended and now - (oldest.ended_at or now) <= self.ended_ttl_s:
                break
            ended.popitem(last=False)

    # -- resynchronisation --------------------------------------------------------

    def begin_resync(self) -> None:
        """Call right before sending ``CoreShowChannels``: changes from now on win over its list."""
        self._resync = (set(), set())

    def abort_resync(self) -> None:
        self._resync = None

    def resync(self, items: Iterable[Event], now: float) -> list[str]:
        """Make the live channels those of a ``CoreShowChannels`` answer.

        ``items`` are its ``CoreShowChannel`` events. Channels created since
        :meth:`begin_resync` stay, channels hung up since stay gone, channels
        missing from the list are dropped (their Hangup was missed). Returns
        the ids of the calls that ended because of it.
        """
        born, dead = self._resync or (set(), set())
        self._resync = None
        listed: dict[str, Event] = {}
        for item in items:
            uniqueid = item.get("Uniqueid")
            if item.name == "CoreShowChannel" and uniqueid:
                listed[uniqueid] = item
        touched: set[str] = set()
        for uniqueid, channel in list(self.channels.items()):
            if uniqueid in listed or uniqueid in born:
                continue
            del self.channels[uniqueid]
            call = self.calls.get(channel.linkedid)
            if call is not None:
                call.channels.pop(uniqueid, None)
                touched.add(call.id)
        for uniqueid, item in listed.items():
            if uniqueid in dead:
                continue
            known_channel = self.channels.get(uniqueid)
            if known_channel is None:
                created_at = now - parse_duration_s(item.get("Duration"))
                self._newchannel_from_list(uniqueid, item, now, created_at)
            else:
                self._set_state(known_channel, _int(item.get("ChannelState"), known_channel.state), now)
        ended = []
        for call_id in touched:
            call = self.calls.get(call_id)
            if call is not None and not call.channels and not call.originate_pending:
                self._end(call, now)
                ended.append(call_id)
        return ended

    def _newchannel_from_list(self, uniqueid: str, item: Event, now: float, created_at: float) -> None:
        resync, self._resync = self._resync, None
        try:
            self._newchannel(uniqueid, item, now, created_at)
        finally:
            self._resync = resync
