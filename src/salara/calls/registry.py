"""The one fold of AMI call events: live channels by Uniqueid, grouped into calls by Linkedid.

Pure (no I/O, no clock): every method that records a time takes two, ``wall``
(Unix seconds, for what is stored or shown) and ``mono`` (monotonic seconds,
for durations and expiry; wall time steps with NTP).

- ``Newchannel`` adds a channel (name, state, caller, context, extension) to
  the call of its ``Linkedid``; ``Newstate``, ``NewCallerid``,
  ``NewConnectedLine`` update it (``Newexten``, ``VarSet`` and ``DialEnd``
  tell how the called side of a call salara placed went); ``Hangup`` removes it and
  records its ``Cause``/``Cause-txt``. A call ends when its last channel
  hangs up, with an :class:`~salara.calls.outcome.Outcome`.
- :meth:`CallRegistry.resync` makes the live channels those of AMI
  ``CoreShowChannels`` (after every login, and periodically), keeping what
  changed while the list was on its way (:meth:`CallRegistry.begin_resync`),
  and says which channels had hung up unseen.
- Calls salara originates are announced first (:meth:`CallRegistry.originated`),
  so they exist from the moment the ``Originate`` leaves, carry their two
  parties, and end with the ``OriginateResponse`` ``Reason``
  (:meth:`CallRegistry.originate_result`) when no channel ever appeared.
- ``Rename``, hangup requests, queues and transfers are folded by
  :mod:`salara.calls.details`.
- Observers (:mod:`salara.calls.lifecycle`) set :attr:`CallRegistry.touched`
  and learn which calls changed; :attr:`CallRegistry.on_touch` tells them of
  changes made outside the fold of an AMI event (an ``OriginateResponse``,
  salara's own transfer).

Bounded: at most ``max_channels`` live channels (the oldest call is dropped
beyond it, counted in :attr:`CallRegistry.evicted`) and at most ``max_ended``
ended calls, each kept ``ended_ttl_s`` seconds.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from datetime import tzinfo
from typing import Final

from salara.ami.messages import Event
from salara.calls.call import UP, Call, Channel, ListedChannel, Origin, Transfer, int_or, known
from salara.calls.details import DETAIL_EVENTS, add_transfer, fold_detail, note_hangup
from salara.calls.listing import Owns, Resync, SinceList, fold_list
from salara.calls.outcome import outcome_of

RINGING: Final = 5
"""Channel state code ``Ringing``: the device the channel reaches rings."""
HANDLED_EVENTS: Final = (
    frozenset({"Newchannel", "Newstate", "NewCallerid", "NewConnectedLine", "Hangup", "Newexten", "VarSet", "DialEnd"})
    | DETAIL_EVENTS
)
_UNTOUCHING: Final = frozenset({"NewCallerid", "NewConnectedLine", "VarSet"})
"""Events that change nothing an observer of calls hears of (a ``VarSet`` of ``DIALSTATUS`` does)."""

MAX_CHANNELS: Final = 50_000
MAX_ENDED: Final = 1_000
ENDED_TTL_S: Final = 3_600.0


class CallRegistry:
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
        self.resyncs = 0
        """Completed :meth:`resync` runs."""
        self.touched: dict[str, None] | None = None
        """Ids of the calls changed since an observer last took them (in order); None: nobody observes."""
        self.on_touch: Callable[[], None] | None = None
        """Called when a call changes outside :meth:`on_event` (to have :attr:`touched` taken soon)."""
        self._since_list = SinceList()
        self.cdr_tz: tzinfo | None = None  # of Cdr event times; None: this machine's (salara.calls.cdr)

    def _touch(self, call_id: str | None) -> None:
        if self.touched is not None and call_id:
            self.touched[call_id] = None

    def _touch_now(self, call_id: str) -> None:
        """A change outside the fold of an AMI event: tell the observer."""
        if self.touched is not None:
            self.touched[call_id] = None
            if self.on_touch is not None:
                self.on_touch()

    # -- lookups ----------------------------------------------------------------

    def get(self, call_id: str, mono: float) -> Call | None:
        """A live or recently ended call."""
        call = self.calls.get(call_id)
        if call is not None:
            return call
        self.prune(mono)
        return self.ended.get(call_id)

    def active(self) -> list[Call]:
        """Live calls that have at least one channel, oldest first."""
        return [call for call in self.calls.values() if call.channels]

    def live_channels(self, call_id: str) -> dict[str, Channel]:
        """The live channels of a call by Uniqueid (empty when it has none or is not live)."""
        call = self.calls.get(call_id)
        return call.channels if call is not None else {}

    # -- calls salara places --------------------------------------------------

    def originated(
        self,
        call_id: str,
        from_: str,
        to: str,
        context: str,
        wall: float,
        owner: str = "",
        client_state: str | None = None,
    ) -> Call:
        """Announce a call salara is about to originate with ``ChannelId`` ``call_id`` (for ``owner``)."""
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = Call(call_id, wall)
        call.origin = Origin(from_, to, context)
        call.owner = owner
        call.client_state = client_state
        call.contexts.add(context)
        call.originate_pending = True
        self.originated_count += 1
        self._touch_now(call_id)
        return call

    def forget(self, call_id: str) -> None:
        """Drop an announced call whose Originate never left (AMI refused it or was down)."""
        call = self.calls.get(call_id)
        if call is not None and not call.channels:
            del self.calls[call_id]

    def originate_result(
        self,
        call_id: str,
        response: str | None,
        reason: int | None,
        wall: float,
        mono: float,
        error: str | None = None,
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
        self._touch_now(call_id)
        if call.ended_at is not None:
            previous = call.outcome
            call.outcome = outcome_of(call)
            if previous is not None and previous.result != call.outcome.result:
                self.outcomes[previous.result] -= 1
                self.outcomes[call.outcome.result] += 1
        elif not call.channels:
            self._end(call, wall, mono)

    def hangup_requested(self, call_id: str) -> None:
        """salara itself hangs the call up (AMI ``Hangup`` of its channels): so says who hung up."""
        call = self.calls.get(call_id)
        if call is not None and call.hung_up_by is None:
            call.hung_up_by = "salara"

    def redirected(self, call_id: str, name: str, target: str, context: str, wall: float) -> None:
        """salara redirected the call's channel ``name`` to ``target@context`` (a blind transfer)."""
        call = self.calls.get(call_id)
        if call is None:
            return
        moved = next((c for c in call.channels.values() if c.name == name), None)
        add_transfer(call, Transfer("redirect", wall, moved, name, target, context))
        self._touch_now(call_id)

    # -- events -------------------------------------------------------------------

    def on_event(self, event: Event, wall: float, mono: float) -> None:
        """Fold one AMI event received at ``wall`` / ``mono``."""
        name = event.name
        if name not in HANDLED_EVENTS:
            return
        if name in DETAIL_EVENTS:
            self._touch(fold_detail(self, event, wall))
            return
        uniqueid = event.get("Uniqueid")
        if not uniqueid:
            return
        if name == "Newchannel":
            self._add(Channel.of_event(uniqueid, event, wall), wall, mono)
            self._since_list.born(uniqueid)
            return
        channel = self.channels.get(uniqueid)
        if name == "Hangup":
            self._hangup(uniqueid, channel, event, wall, mono)
            return
        if channel is None:
            return
        if name not in _UNTOUCHING or event.get("Variable") == "DIALSTATUS":
            self._touch(channel.linkedid)
        if name == "Newstate":
            self._set_state(channel, int_or(event.get("ChannelState"), channel.state), wall)
            channel.name = event.get("Channel") or channel.name
            self._position(channel, event)
        elif name == "NewCallerid":
            channel.caller_id_num = event.get("CallerIDNum") or channel.caller_id_num
            channel.caller_number = known(event.get("CallerIDNum"))
            channel.caller_name = known(event.get("CallerIDName"))
        elif name == "NewConnectedLine":
            channel.connected_number = known(event.get("ConnectedLineNum"))
            channel.connected_name = known(event.get("ConnectedLineName"))
        else:
            if name == "Newexten":
                self._in_context(channel.linkedid, event.get("Context") or "")
                call = self.calls.get(channel.linkedid)
                if call is not None and event.get("Application") == "Hangup":
                    note_hangup(call, channel, "dialplan")
            self._called_side(channel, event, wall)

    def _position(self, channel: Channel, event: Event) -> None:
        channel.caller_id_num = event.get("CallerIDNum") or channel.caller_id_num
        channel.dialplan_context = event.get("Context") or channel.dialplan_context
        channel.dialplan_exten = event.get("Exten") or channel.dialplan_exten
        self._in_context(channel.linkedid, channel.dialplan_context)

    def _in_context(self, call_id: str, context: str) -> None:
        call = self.calls.get(call_id)
        if call is not None and context and context not in call.contexts:
            call.contexts.add(context)

    def _called_side(self, channel: Channel, event: Event, wall: float) -> None:
        """What a ``Newexten``, ``VarSet`` or ``DialEnd`` says of the called side of a call salara placed."""
        call = self.calls.get(channel.linkedid)
        if call is None or call.origin is None:
            return
        name = event.name
        if name == "Newexten":
            # The dialplan runs on the operator's channel once it answered; Answer() there is the
            # called side (an IVR, a simulated extension) answering the call itself.
            if event.get("Application") == "Answer" and channel.uniqueid == call.id and channel.state == UP:
                call.called_answered(wall, "Answer()")
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
                call.called_answered(wall, "Dial ANSWER")

    def _add(self, channel: Channel, wall: float, mono: float, *, unseen: bool = False) -> None:
        """Add a live channel; ``unseen``: known from a list, its call's start (if new) was not seen."""
        call = self.calls.get(channel.linkedid)
        if call is None:
            call = self.ended.pop(channel.linkedid, None)  # a late channel revives its call
            if call is not None:
                self.outcomes[call.outcome.result if call.outcome else "unknown"] -= 1
                call.ended_at = call.ended_mono = call.outcome = None
            else:
                call = Call(channel.linkedid, channel.created_at, start_unseen=unseen)
            self.calls[channel.linkedid] = call
        self._touch(call.id)
        old = self.channels.pop(channel.uniqueid, None)
        if old is not None:
            self.calls.get(old.linkedid, call).channels.pop(old.uniqueid, None)
        call.channels[channel.uniqueid] = channel
        self.channels[channel.uniqueid] = channel
        call.contexts.update(c for c in (channel.context, channel.dialplan_context) if c)
        if call.first is None or channel.uniqueid == call.id:
            call.first = channel
        if channel.state == UP:
            self._set_state(channel, UP, channel.created_at)
        while len(self.channels) > self.max_channels:
            self._evict_oldest(wall, mono)

    def _evict_oldest(self, wall: float, mono: float) -> None:
        for call in self.calls.values():
            if call.channels:
                for uniqueid in call.channels:
                    self.channels.pop(uniqueid, None)
                call.channels.clear()
                self.evicted += 1
                self._end(call, wall, mono)
                return

    def _set_state(self, channel: Channel, state: int, wall: float) -> None:
        channel.state = state
        if state == RINGING and channel.ringing_at is None:
            channel.ringing_at = wall
        if state == UP and channel.answered_at is None:
            channel.answered_at = wall
            call = self.calls.get(channel.linkedid)
            if call is None:
                return
            if call.origin is not None and channel.uniqueid == call.id:
                if call.operator_answered_at is None:
                    call.operator_answered_at = wall  # the operator's leg; the call is answered by the called side
            else:
                call.called_answered(wall, channel.name)

    def _hangup(self, uniqueid: str, channel: Channel | None, event: Event, wall: float, mono: float) -> None:
        self._since_list.dead(uniqueid)
        linkedid = channel.linkedid if channel is not None else event.get("Linkedid") or uniqueid
        call = self.calls.get(linkedid)
        if call is None:
            return
        self._touch(call.id)
        call.record_cause(uniqueid, int_or(event.get("Cause"), -1), event.get("Cause-txt"))
        if channel is not None:
            note_hangup(call, channel, "hangup")
            del self.channels[uniqueid]
            call.channels.pop(uniqueid, None)
        if not call.channels and not call.originate_pending:
            self._end(call, wall, mono)

    def _end(self, call: Call, wall: float, mono: float) -> None:
        self._touch(call.id)
        self.calls.pop(call.id, None)
        call.ended_at = wall
        call.ended_mono = mono
        call.originate_pending = False
        call.outcome = outcome_of(call)
        self.outcomes[call.outcome.result] += 1
        self.ended[call.id] = call
        self.ended.move_to_end(call.id)
        self.prune(mono)

    def prune(self, mono: float) -> None:
        """Forget ended calls beyond the count bound or older than the time bound."""
        ended = self.ended
        while ended:
            oldest = next(iter(ended.values()))
            ended_mono = oldest.ended_mono if oldest.ended_mono is not None else mono
            if len(ended) <= self.max_ended and mono - ended_mono <= self.ended_ttl_s:
                break
            ended.popitem(last=False)

    # -- restarts and resynchronisation -----------------------------------------

    def restore(self, listed: Iterable[ListedChannel], wall: float, mono: float) -> None:
        """Add channels a store kept over a restart (their Hangups may have been missed: see :meth:`resync`)."""
        for item in listed:
            if item.uniqueid and item.uniqueid not in self.channels:
                self._add(Channel.of_listed(item, wall), wall, mono, unseen=True)

    def begin_resync(self) -> None:
        """Call right before sending ``CoreShowChannels``: changes from now on win over its list."""
        self._since_list.begin()

    def abort_resync(self) -> None:
        """The list did not come: forget what :meth:`begin_resync` started."""
        self._since_list.end()

    def resync(self, listed: Iterable[ListedChannel], wall: float, mono: float, owns: Owns = None) -> Resync:
        """Make the live channels those of a ``CoreShowChannels`` answer (``listed_channel`` of each item).

        Channels created since :meth:`begin_resync` stay, channels hung up
        since stay gone, every other channel missing from the list hung up
        unseen: it is dropped and reported in :attr:`Resync.missed`. With
        ``owns`` (a Uniqueid's test: one PBX's channels, :mod:`salara.calls.ids`)
        only the channels it owns are checked against the list.
        """
        born, dead = self._since_list.end()
        result = fold_list(self, listed, born, dead, wall, mono, owns)
        self.resyncs += 1
        return result
