"""Call tracking and CRM event selection on recorded Asterisk 22 event streams."""

from __future__ import annotations

import pytest

from salara.ami.messages import Event
from salara.ami.protocol import AMIConnection
from salara.calls.call import ListedChannel
from salara.calls.events import agent_number
from salara.calls.tracking import CallTracker, TrackingChanges, folds
from salara.config import Event as Modes
from tests.transcript import received
from tests.unit.test_ami_protocol import AMI_TRANSCRIPTS

QUEUE_CALL = "1795962405.0"  # inbound_ua_to_queue.txt: 8001 dials queue 710, agent1 answers
DIAL_CALL = "1795962280.24"  # originate_dial_pjsip.txt: Local/8001 dials the phone


def events(name: str) -> list[Event]:
    conn = AMIConnection()
    for chunk in received(name):
        conn.receive_data(chunk)
    return [m for m in conn.drain() if isinstance(m, Event)]


def run(tracker: CallTracker, name: str) -> list[dict[str, str]]:
    out = []
    for event in events(name):
        crm = tracker.on_event(event, 0.0, 0.0)
        if crm is not None:
            out.append(crm.payload)
    return out


def modes(**kw: int) -> Modes:
    return Modes(**{"newchannel": 0, "hangup": 0, "newexten": 0, "agentcon": 0, **kw})


def test_tracked_queue_call_events_in_mode_1() -> None:
    tracker = CallTracker(modes(newchannel=1, hangup=1, newexten=1, agentcon=1))
    tracker.track(QUEUE_CALL, "8001", "710", "route", wall=0, mono=0)
    phone, agent1, agent2 = (
        "PJSIP/8001-00000000",
        "Local/agent1@queue-agents-00000000;1",
        "Local/agent1@queue-agents-00000000;2",
    )
    parties = {"caller": "8001", "exten": "710"}
    assert run(tracker, "inbound_ua_to_queue.txt") == [
        {"event": "Newchannel", "chan": phone, **parties, "state": "RING"},
        {"event": "Newexten", "chan": phone, **parties, "state": "UP", "app": "Queue"},
        {"event": "Newchannel", "chan": agent1, **parties, "state": "DOWN"},
        {"event": "Newchannel", "chan": agent2, **parties, "state": "RING"},
        {"event": "Newexten", "chan": agent1, **parties, "state": "UP", "app": "AppQueue"},
        {
            "event": "AgentConnect",
            "chan": phone,
            "caller": "8001",
            "queue": "710",
            "state": "UP",
            "agent": "agent1",
        },
        {"event": "Newexten", "chan": agent2, **parties, "state": "UP", "app": "Wait"},
        {"event": "Newexten", "chan": agent2, **parties, "state": "UP", "app": "Hangup"},
        {"event": "Hangup", "chan": agent2, **parties, "state": "UP"},
        {"event": "Hangup", "chan": agent1, **parties, "state": "UP"},
        {"event": "Hangup", "chan": phone, **parties, "state": "UP"},
    ]
    # The last Hangup ended tracking.
    assert tracker.calls == {}


def test_mode_2_reports_every_state_of_tracked_calls() -> None:
    tracker = CallTracker(modes(newexten=2))
    tracker.track(QUEUE_CALL, "8001", "710", "route", wall=0, mono=0)
    states = [(p["state"], p["app"]) for p in run(tracker, "inbound_ua_to_queue.txt")]
    assert states[:3] == [("RING", "Answer"), ("UP", "Queue"), ("DOWN", "AppQueue")]
    assert len(states) == 7


def test_untracked_calls_only_in_all_calls_modes() -> None:
    tracker = CallTracker(modes(newchannel=1, hangup=1, newexten=2, agentcon=2))
    assert run(tracker, "inbound_ua_to_queue.txt") == []
    tracker = CallTracker(modes(newchannel=2, hangup=2, newexten=3, agentcon=3))
    got = run(tracker, "inbound_ua_to_queue.txt")
    assert [p["event"] for p in got].count("Newchannel") == 3
    assert [p["event"] for p in got].count("Hangup") == 3
    # Untracked: caller and exten come from the event itself.
    assert got[0] == {
        "event": "Newchannel",
        "chan": "PJSIP/8001-00000000",
        "caller": "8001",
        "exten": "710",
        "state": "RING",
    }
    agent = next(p for p in got if p["event"] == "AgentConnect")
    assert agent == {
        "event": "AgentConnect",
        "chan": "PJSIP/8001-00000000",
        "caller": "8001",
        "queue": "710",
        "state": "UP",
        "agent": "agent1",
    }


def test_mode_0_emits_nothing_but_tracking_still_ends() -> None:
    tracker = CallTracker(modes())
    tracker.track(DIAL_CALL, "5550001", "8001", "route", wall=0, mono=0)
    assert run(tracker, "originate_dial_pjsip.txt") == []
    assert tracker.calls == {}


def test_tracking_ends_only_after_the_last_channel() -> None:
    tracker = CallTracker(modes(hangup=1))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    hangups = []
    for event in events("originate_dial_pjsip.txt"):
        crm = tracker.on_event(event, 0.0, 0.0)
        if crm is not None:
            hangups.append((crm.payload["chan"], DIAL_CALL in tracker.calls))
    assert hangups == [
        ("Local/8001@phones-00000008;1", True),
        ("Local/8001@phones-00000008;2", True),
        ("PJSIP/8001-00000004", False),
    ]


def test_sweep_drops_calls_without_live_channels() -> None:
    tracker = CallTracker(modes())
    tracker.track("a", "1", "2", "makecall", wall=0, mono=0)
    tracker.track("b", "1", "2", "makecall", wall=0, mono=0)
    tracker.track("fresh", "1", "2", "makecall", wall=95, mono=95)
    tracker.calls["a"].seen_channel = True
    dropped = tracker.sweep([ListedChannel("b.1", "b")], wall=100, mono=100, grace_s=30).ended
    assert dropped == ["a"]
    assert set(tracker.calls) == {"b", "fresh"}
    assert tracker.sweep([], wall=200, mono=200, grace_s=30).ended == ["b", "fresh"]


def feed_until_first_hangup(tracker: CallTracker, name: str) -> list[dict[str, str]]:
    """Feed a recorded call up to (not including) its first Hangup: the Hangups are then missed."""
    out = []
    for event in events(name):
        if event.name == "Hangup":
            break
        crm = tracker.on_event(event, 0.0, 0.0)
        if crm is not None:
            out.append(crm.payload)
    return out


DIAL_CHANNELS = ["Local/8001@phones-00000008;1", "Local/8001@phones-00000008;2", "PJSIP/8001-00000004"]


@pytest.mark.parametrize("hangup", [1, 2])
def test_missed_hangups_of_a_tracked_call_are_synthesized(hangup: int) -> None:
    tracker = CallTracker(modes(hangup=hangup))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    feed_until_first_hangup(tracker, "originate_dial_pjsip.txt")
    # AMI was down while the call ended: Asterisk lists none of its channels.
    sweep = tracker.sweep([], wall=10, mono=10, grace_s=30)
    assert [e.payload for e in sweep.hangups] == [
        {"event": "Hangup", "chan": chan, "caller": "5550001", "exten": "8001", "state": "UP"} for chan in DIAL_CHANNELS
    ]
    assert all(e.synthesized and e.tracked and e.linkedid == DIAL_CALL for e in sweep.hangups)
    assert [e.uniqueid for e in sweep.hangups] == ["1795962280.24", "1795962280.25", "1795962280.26"]
    assert sweep.ended == [DIAL_CALL] and sweep.missed == 3
    assert tracker.calls == {} and tracker.live == {} and tracker.channels == {}
    assert tracker.synthesized == 3


def test_synthesized_hangup_has_the_last_known_state() -> None:
    tracker = CallTracker(modes(hangup=1))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    for event in events("originate_dial_pjsip.txt"):
        tracker.on_event(event, 0.0, 0.0)
        if event.name == "Newstate" and event.get("ChannelState") == "5":
            break  # the phone rings: PJSIP/8001 Ringing, the Local pair Down and Ring
    states = {e.payload["chan"]: e.payload["state"] for e in tracker.sweep([], wall=1, mono=1, grace_s=30).hangups}
    assert states == {DIAL_CHANNELS[0]: "DOWN", DIAL_CHANNELS[1]: "RING", DIAL_CHANNELS[2]: "RINGING"}


def test_mode_0_synthesizes_nothing_but_tracking_still_ends() -> None:
    tracker = CallTracker(modes())
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    feed_until_first_hangup(tracker, "originate_dial_pjsip.txt")
    sweep = tracker.sweep([], wall=10, mono=10, grace_s=30)
    assert sweep.hangups == [] and sweep.ended == [DIAL_CALL] and sweep.missed == 3
    assert tracker.calls == {}


def test_missed_hangups_of_untracked_calls_only_in_mode_2() -> None:
    tracker = CallTracker(modes(hangup=1))
    feed_until_first_hangup(tracker, "inbound_ua_to_queue.txt")
    assert tracker.sweep([], wall=10, mono=10, grace_s=30).hangups == []
    assert tracker.live == {} and tracker.channels == {}
    tracker = CallTracker(modes(hangup=2))
    feed_until_first_hangup(tracker, "inbound_ua_to_queue.txt")
    sweep = tracker.sweep([], wall=10, mono=10, grace_s=30)
    # Untracked: the parties each channel last reported, as its real Hangup would have said.
    assert [e.payload for e in sweep.hangups] == [
        {"event": "Hangup", "chan": "PJSIP/8001-00000000", "caller": "8001", "exten": "710", "state": "UP"},
        {
            "event": "Hangup",
            "chan": "Local/agent1@queue-agents-00000000;1",
            "caller": "710",
            "exten": "710",
            "state": "UP",
        },
        {
            "event": "Hangup",
            "chan": "Local/agent1@queue-agents-00000000;2",
            "caller": "8001",
            "exten": "agent1",
            "state": "UP",
        },
    ]
    assert all(e.synthesized and not e.tracked for e in sweep.hangups)


def test_channels_still_listed_get_no_hangup() -> None:
    tracker = CallTracker(modes(hangup=2))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    feed_until_first_hangup(tracker, "originate_dial_pjsip.txt")
    listed = [ListedChannel("1795962280.26", DIAL_CALL, DIAL_CHANNELS[2], 6)]
    sweep = tracker.sweep(listed, wall=10, mono=10, grace_s=30)
    assert [e.payload["chan"] for e in sweep.hangups] == DIAL_CHANNELS[:2]
    assert sweep.ended == [] and tracker.calls[DIAL_CALL].channels == {"1795962280.26"}


def test_sweep_keeps_what_changed_while_the_list_was_on_its_way() -> None:
    tracker = CallTracker(modes(hangup=1))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    stream = events("originate_dial_pjsip.txt")
    newchannels = [i for i, e in enumerate(stream) if e.name == "Newchannel"]
    for event in stream[: newchannels[2]]:
        tracker.on_event(event, 0.0, 0.0)  # the Local pair exists
    tracker.begin_resync()  # CoreShowChannels sent: it lists the Local pair as they are now
    listed = [
        ListedChannel("1795962280.24", DIAL_CALL, DIAL_CHANNELS[0], 0),
        ListedChannel("1795962280.25", DIAL_CALL, DIAL_CHANNELS[1], 4),
    ]
    # ... and while it is on its way (the same read as its Complete), the phone's
    # channel is born and ;1 hangs up.
    tracker.on_event(stream[newchannels[2]], 0.0, 0.0)
    hangup = next(e for e in stream if e.name == "Hangup" and e.get("Channel") == DIAL_CHANNELS[0])
    assert tracker.on_event(hangup, 0.0, 0.0) is not None
    sweep = tracker.sweep(listed, wall=1, mono=1, grace_s=30)
    assert sweep.hangups == [], "no Hangup for the channel hung up (seen) nor the one born"
    assert tracker.calls[DIAL_CALL].channels == {"1795962280.25", "1795962280.26"}
    assert tracker.live == {DIAL_CALL: {"1795962280.25", "1795962280.26"}}
    assert set(tracker.channels) == {"1795962280.25", "1795962280.26"}


def test_a_newchannel_during_the_sweep_does_not_end_tracking_early() -> None:
    tracker = CallTracker(modes(hangup=1))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    first = next(e for e in events("originate_dial_pjsip.txt") if e.name == "Newchannel")
    tracker.begin_resync()  # the list is taken before the call's first channel exists
    tracker.on_event(first, 0.0, 0.0)
    sweep = tracker.sweep([], wall=100, mono=100, grace_s=30)
    assert sweep.ended == [] and DIAL_CALL in tracker.calls
    assert tracker.calls[DIAL_CALL].channels == {DIAL_CALL}


def test_tracking_survives_a_restart_through_its_changes() -> None:
    tracker = CallTracker(modes(hangup=1))
    tracker.registry.originated(DIAL_CALL, "5550001", "8001", "sim", 4.0, client_state="lead-4711")
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=5, mono=5)
    feed_until_first_hangup(tracker, "originate_dial_pjsip.txt")
    first = tracker.take_changes()
    assert first is not None and tracker.take_changes() is None
    answered_at = tracker.registry.calls[DIAL_CALL].answered_at
    assert answered_at is not None  # the called side answered (run() feeds every event at 0.0)
    assert first.calls == [(DIAL_CALL, "5550001", "8001", "makecall", 5, "lead-4711", answered_at)]
    assert sorted(first.channels) == [
        ("1795962280.24", DIAL_CALL, DIAL_CHANNELS[0], 6, "8001", "8001"),
        ("1795962280.25", DIAL_CALL, DIAL_CHANNELS[1], 6, "5550001", "8001"),
        ("1795962280.26", DIAL_CALL, DIAL_CHANNELS[2], 6, "8001", "8001"),
    ]
    # An untracked call in mode 1 is not worth storing.
    feed_until_first_hangup(tracker, "inbound_ua_to_queue.txt")
    assert tracker.take_changes() is None
    # salara restarts: a new tracker gets what was stored, and finds the Hangups missed.
    again = CallTracker(modes(hangup=1))
    again.restore(TrackingChanges(calls=first.calls, channels=first.channels), 0.0, 0.0)
    assert set(again.calls) == {DIAL_CALL} and again.calls[DIAL_CALL].seen_channel
    restored = again.registry.calls[DIAL_CALL]
    assert (restored.client_state, restored.answered_at) == ("lead-4711", answered_at)  # a summary can tell them
    sweep = again.sweep([], wall=10, mono=10, grace_s=30)
    assert sorted(e.payload["chan"] for e in sweep.hangups) == DIAL_CHANNELS
    assert {e.payload["state"] for e in sweep.hangups} == {"UP"}
    assert sweep.ended == [DIAL_CALL]
    ended = again.take_changes()
    assert ended is not None
    assert ended.ended == [DIAL_CALL] and sorted(ended.removed) == ["1795962280.24", "1795962280.25", "1795962280.26"]
    assert ended.calls == [] and ended.channels == []


def test_changes_follow_tracking() -> None:
    calls: list[int] = []
    tracker = CallTracker(modes(hangup=1))
    tracker.on_change = lambda: calls.append(1)
    stream = events("inbound_ua_to_queue.txt")
    split = next(i for i, e in enumerate(stream) if e.name == "AgentConnect")
    for event in stream[:split]:
        tracker.on_event(event, 0.0, 0.0)
    assert calls == [] and tracker.take_changes() is None, "untracked channels are not stored in mode 1"
    tracker.track(QUEUE_CALL, "8001", "710", "route", wall=0, mono=0)
    tracker.track(QUEUE_CALL, "8001", "710", "route", wall=0, mono=0)
    assert calls == [1], "on_change once until the changes are taken"
    changes = tracker.take_changes()
    assert changes is not None and len(changes.calls) == 1 and len(changes.channels) == 3
    # A channel born and gone between two takes is never written.
    tracker.on_event(Event("Newchannel", (("Uniqueid", "x.1"), ("Linkedid", QUEUE_CALL), ("Channel", "X/1"))), 0.0, 0.0)
    tracker.on_event(Event("Hangup", (("Uniqueid", "x.1"), ("Linkedid", QUEUE_CALL), ("Channel", "X/1"))), 0.0, 0.0)
    assert tracker.take_changes() == TrackingChanges()
    assert tracker.forget(QUEUE_CALL)
    changes = tracker.take_changes()
    assert changes is not None and changes.ended == [QUEUE_CALL] and len(changes.removed) == 3
    # Stored channels of a call no longer tracked are not kept over a restart.
    again = CallTracker(modes(hangup=1))
    again.restore(TrackingChanges(channels=[("y.1", "y", "Y/1", 6, "1", "2")]), 0.0, 0.0)
    restored = again.take_changes()
    assert restored is not None and restored.removed == ["y.1"]


def test_refused_changes_are_handed_out_again() -> None:
    tracker = CallTracker(modes(hangup=1))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=5, mono=5)
    feed_until_first_hangup(tracker, "originate_dial_pjsip.txt")
    changes = tracker.take_changes()
    assert changes is not None
    tracker.keep_changes(changes)
    again = tracker.take_changes()
    assert again is not None
    assert again.calls == changes.calls and sorted(again.channels) == sorted(changes.channels)


def test_tracking_is_bounded() -> None:
    tracker = CallTracker(modes(), max_tracked=3)
    for index in range(5):
        tracker.track(str(index), "1", "2", "route", wall=index, mono=index)
    assert list(tracker.calls) == ["2", "3", "4"]
    assert tracker.evicted == 2


@pytest.mark.parametrize(
    ("interface", "number"),
    [
        ("Local/2222@ctx-00000001;1", "2222"),
        ("Local/agent1@queue-agents/n", "agent1"),
        ("PJSIP/8001", "8001"),
        ("SIP/2222", "2222"),
        ("SIP/trunk/89161234567", "89161234567"),
        ("PJSIP/trunk/4951234567@provider", "4951234567"),
        ("2222", "2222"),
    ],
)
def test_agent_number_from_interface(interface: str, number: str) -> None:
    assert agent_number(interface) == number


def test_a_call_tracked_mid_way_ends_with_its_last_channel() -> None:
    # Routing tracks a call that already has channels (the caller's, Local pairs...).
    tracker = CallTracker(modes(hangup=1))
    stream = events("inbound_ua_to_queue.txt")
    split = next(i for i, e in enumerate(stream) if e.name == "AgentConnect")
    for event in stream[:split]:
        assert tracker.on_event(event, 0.0, 0.0) is None
    tracker.track(QUEUE_CALL, "8001", "710", "route", wall=0, mono=0)
    assert len(tracker.calls[QUEUE_CALL].channels) == 3
    hangups = [crm.payload["chan"] for e in stream[split:] if (crm := tracker.on_event(e, 0.0, 0.0)) is not None]
    assert hangups == [
        "Local/agent1@queue-agents-00000000;2",
        "Local/agent1@queue-agents-00000000;1",
        "PJSIP/8001-00000000",
    ]
    assert tracker.calls == {} and tracker.live == {}


@pytest.mark.parametrize("dropped", ["", "DialEnd"])  # without DialEnd, the VarSet of DIALSTATUS tells the dial status
@pytest.mark.parametrize("name", [name for name in AMI_TRANSCRIPTS if events(name)])
def test_what_folds_leaves_out_changes_nothing(name: str, dropped: str) -> None:
    everything, only_folded = (
        CallTracker(modes(newchannel=2, hangup=2, newexten=3, agentcon=3)),
        CallTracker(modes(newchannel=2, hangup=2, newexten=3, agentcon=3)),
    )
    told: tuple[list[object], list[object]] = ([], [])
    stream = [event for event in events(name) if event.name != dropped]
    for call_id in {event.get("Linkedid") for event in stream} - {None}:
        for tracker in (everything, only_folded):  # as if salara placed them: DIALSTATUS then counts
            tracker.registry.originated(str(call_id), "8001", "9001", "phones", 999.0)
    left_out = 0
    for index, event in enumerate(stream):
        told[0].append(everything.on_event(event, 1000.0 + index, float(index)))
        if folds(event):
            told[1].append(only_folded.on_event(event, 1000.0 + index, float(index)))
        else:
            left_out += 1
            told[1].append(None)
    assert told[0] == told[1]
    for part in ("calls", "ended", "channels"):
        assert repr(getattr(everything.registry, part)) == repr(getattr(only_folded.registry, part)), part
    assert repr(everything.calls) == repr(only_folded.calls)
    assert left_out  # some of each stream is not read
