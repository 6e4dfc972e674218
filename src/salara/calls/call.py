"""The records of the call model: a channel, a call, a channel as ``CoreShowChannels`` lists it.

Times are Unix seconds (``*_at``) unless a name says monotonic (``*_mono``).
Channel state codes are Asterisk's ``enum ast_channel_state`` (0 Down ... 6 Up,
10 Unknown), as AMI's ``ChannelState`` header gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

from salara.ami.messages import Event

if TYPE_CHECKING:
    from salara.calls.outcome import Outcome

CallState = Literal["dialing", "ringing", "up", "ended"]

UP: Final = 6
"""Channel state code of an answered channel (``AST_STATE_UP``)."""
UNKNOWN_STATE: Final = 10
"""Channel state code ``Unknown``: what is reported when no state was ever seen."""
RINGING_STATES: Final = frozenset({4, 5})  # AST_STATE_RING, AST_STATE_RINGING


def int_or(value: str | None, default: int) -> int:
    """An AMI header as an integer, ``default`` when absent or unreadable."""
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def known(value: str | None) -> str | None:
    """An AMI party field, or None for Asterisk's placeholders (empty, ``<unknown>``)."""
    if value is None or value in ("", "<unknown>", "<Unknown>"):
        return None
    return value


@dataclass(slots=True)
class Channel:
    """One live channel.

    ``context``/``exten`` are where it was created (what was dialled);
    ``dialplan_context``/``dialplan_exten`` as the last ``Newchannel``,
    ``Newstate`` or ``CoreShowChannel`` said (raw, empty when never said).
    """

    uniqueid: str
    linkedid: str
    name: str
    """``PJSIP/8001-00000004``; empty when only its Uniqueid is known."""
    state: int
    created_at: float
    caller_number: str | None = None
    caller_name: str | None = None
    connected_number: str | None = None
    connected_name: str | None = None
    context: str | None = None
    exten: str | None = None
    answered_at: float | None = None
    dialplan_context: str = ""
    dialplan_exten: str = ""
    caller_id_num: str = ""
    """``CallerIDNum`` as last reported, raw (``<unknown>`` kept): what a synthesized Hangup says."""
    ringing_at: float | None = None
    """When it first reported state Ringing (5): the device it reaches rings."""

    @classmethod
    def of_event(cls, uniqueid: str, event: Event, created_at: float) -> Channel:
        """The channel a ``Newchannel`` announces."""
        context, exten = event.get("Context") or "", event.get("Exten") or ""
        return cls(
            uniqueid,
            event.get("Linkedid") or uniqueid,
            event.get("Channel") or "",
            int_or(event.get("ChannelState"), 0),
            created_at,
            known(event.get("CallerIDNum")),
            known(event.get("CallerIDName")),
            known(event.get("ConnectedLineNum")),
            known(event.get("ConnectedLineName")),
            known(context),
            known(exten),
            dialplan_context=context,
            dialplan_exten=exten,
            caller_id_num=event.get("CallerIDNum") or "",
        )

    @classmethod
    def of_listed(cls, item: ListedChannel, created_at: float) -> Channel:
        """A channel known from a ``CoreShowChannel`` item (or a store)."""
        return cls(
            item.uniqueid,
            item.linkedid or item.uniqueid,
            item.name,
            item.state,
            created_at,
            known(item.caller),
            known(item.caller_name),
            known(item.connected),
            known(item.connected_name),
            known(item.context),
            known(item.exten),
            dialplan_context=item.context,
            dialplan_exten=item.exten,
            caller_id_num=item.caller,
        )


@dataclass(frozen=True, slots=True)
class Origin:
    """A call salara originated: ``from`` rang first, then ``to`` was dialled in ``context``."""

    from_: str
    to: str
    context: str


TransferKind = Literal["blind", "attended", "redirect"]
"""A feature blind transfer (AMI ``BlindTransfer``), an attended one, or salara's own ``Redirect``."""


@dataclass(frozen=True, slots=True, eq=False)
class Transfer:
    """One transfer of a call: ``channel`` went to ``target`` (in ``context``) at ``at``."""

    kind: TransferKind
    at: float
    channel: Channel | None
    """The channel moved, as the call model knows it (its name follows ``Rename``)."""
    name: str
    """Its name as the transfer reported it (when the model does not know the channel)."""
    target: str
    context: str = ""
    transferer: Channel | None = None

    @property
    def channel_name(self) -> str:
        """The moved channel's name now (after a masquerade, the one Asterisk reports since)."""
        return self.channel.name if self.channel is not None and self.channel.name else self.name


@dataclass(slots=True)
class Told:
    """Which lifecycle events of a call were decided already (:mod:`salara.calls.lifecycle`)."""

    started: bool = False
    ringing: set[str] = field(default_factory=set)
    """Uniqueids of the channels whose ringing was told."""
    operator_answered: bool = False
    answered: bool = False
    transfers: int = 0
    ended: bool = False


class ListedChannel(NamedTuple):
    """A channel Asterisk has now: one ``CoreShowChannel`` item (or a channel a store kept)."""

    uniqueid: str
    linkedid: str
    name: str = ""
    state: int = UNKNOWN_STATE
    caller: str = ""
    exten: str = ""
    context: str = ""
    caller_name: str = ""
    connected: str = ""
    connected_name: str = ""
    duration_s: float = 0.0


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
    ended_mono: float | None = None
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
    owner: str = ""
    """Who placed it through salara (a token's name), else empty."""
    contexts: set[str] = field(default_factory=set)
    """Every dialplan context a channel of the call was reported in (and a placed call's own)."""
    client_state: str | None = None
    """What the CRM asked to have echoed on the call's lifecycle events."""
    routed_to: str | None = None
    """The destination salara routed the call to (FastAGI), else None."""
    start_unseen: bool = False
    """The call was first known from a channel list (a resync, or a restart), not from its events."""
    end_unseen: bool = False
    """The call ended while salara was not looking: a resync found its channels gone."""
    hung_up_by: str | None = None
    """Whose hangup ended it: ``operator``, ``caller``, ``called`` or ``salara`` (:mod:`salara.calls.details`)."""
    left_behind: set[str] = field(default_factory=set)
    """Uniqueids of channels a transfer left behind: their hangups do not say who ended the call."""
    queue: str | None = None
    agent: str | None = None
    transfers: list[Transfer] = field(default_factory=list)
    recording: str | None = None
    """The file salara asked ``MixMonitor`` to record the call into (:mod:`salara.calls.recording`), else None."""
    cdr_ended_at: float | None = None
    """The latest ``EndTime`` of a ``Cdr`` event of the call (Unix s): its end when the Hangups went unseen."""
    told: Told = field(default_factory=Told, repr=False, compare=False)

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

    def called_answered(self, wall: float, by: str) -> None:
        """The called side answered at ``wall``, as ``by`` shows (a channel's name, ``Dial ANSWER``...)."""
        if self.answered_at is None:
            self.answered_at = wall
            self.answered_by = by

    def record_cause(self, uniqueid: str, cause: int, text: str | None) -> None:
        """A channel's ``Hangup`` ``Cause`` (-1 when absent): keep what tells best why the call ended."""
        # The first channel's cause tells best; else the first one given; 0 says nothing.
        if cause >= 0 and (self.hangup_cause in (None, 0) or (uniqueid == self.id and cause != 0)):
            self.hangup_cause = cause
            self.hangup_cause_text = text
        # For a call salara placed, the called side's own cause (a channel Dial created, not the operator's).
        if self.origin is not None and uniqueid != self.id and cause > 0 and self.called_cause is None:
            self.called_cause = cause
            self.called_cause_text = text


def listed_channel(item: Event) -> ListedChannel:
    """A ``CoreShowChannel`` list item as the registry's ``resync`` takes it."""
    return ListedChannel(
        item.get("Uniqueid") or "",
        item.get("Linkedid") or "",
        item.get("Channel") or "",
        int_or(item.get("ChannelState"), UNKNOWN_STATE),
        item.get("CallerIDNum") or "",
        item.get("Exten") or "",
        context=item.get("Context") or "",
        caller_name=item.get("CallerIDName") or "",
        connected=item.get("ConnectedLineNum") or "",
        connected_name=item.get("ConnectedLineName") or "",
        duration_s=parse_duration_s(item.get("Duration")),
    )


def parse_duration_s(text: str | None) -> float:
    """``CoreShowChannel`` ``Duration`` (``HH:MM:SS``) in seconds; 0 when unreadable."""
    try:
        hours, minutes, seconds = (int(part) for part in (text or "").split(":"))
    except ValueError:
        return 0.0
    return float(hours * 3600 + minutes * 60 + seconds)
