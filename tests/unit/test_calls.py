"""Call tracking and CRM event selection on recorded Asterisk 22 event streams."""

from __future__ import annotations

import pytest

from salara.ami.messages import Event
from salara.ami.protocol import AMIConnection
from salara.calls import CallTracker, agent_number
from salara.config import Event as Modes
from tests.transcript import received

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
        crm = tracker.on_event(event)
        if crm is not None:
            out.append(crm.payload)
    return out


def modes(**kw: int) -> Modes:
    return Modes(**{"newchannel": 0, "hangup": 0, "newexten": 0, "agentcon": 0, **kw})


def test_tracked_queue_call_events_in_mode_1() -> None:
    tracker = CallTracker(modes(newchannel=1, hangup=1, newexten=1, agentcon=1))
    tracker.track(QUEUE_CALL, "8001", "710", "route", now=0)
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
    tracker.track(QUEUE_CALL, "8001", "710", "route", now=0)
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
    tracker.track(DIAL_CALL, "5550001", "8001", "route", now=0)
    assert run(tracker, "originate_dial_pjsip.txt") == []
    assert tracker.calls == {}


def test_tracking_ends_only_after_the_last_channel() -> None:
    tracker = CallTracker(modes(hangup=1))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", now=0)
    hangups = []
    for event in events("originate_dial_pjsip.txt"):
        crm = tracker.on_event(event)
        if crm is not None:
            hangups.append((crm.payload["chan"], DIAL_CALL in tracker.calls))
    assert hangups == [
        ("Local/8001@phones-00000008;1", True),
        ("Local/8001@phones-00000008;2", True),
        ("PJSIP/8001-00000004", False),
    ]


def test_sweep_drops_calls_without_live_channels() -> None:
    tracker = CallTracker(modes())
    tracker.track("a", "1", "2", "makecall", now=0)
    tracker.track("b", "1", "2", "makecall", now=0)
    tracker.track("fresh", "1", "2", "makecall", now=95)
    tracker.calls["a"].seen_channel = True
    dropped = tracker.sweep([("b.1", "b")], now=100, grace_s=30)
    assert dropped == ["a"]
    assert set(tracker.calls) == {"b", "fresh"}
    assert tracker.sweep([], now=200, grace_s=30) == ["b", "fresh"]


def test_tracking_is_bounded() -> None:
    tracker = CallTracker(modes(), max_tracked=3)
    for index in range(5):
        tracker.track(str(index), "1", "2", "route", now=index)
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
        assert tracker.on_event(event) is None
    tracker.track(QUEUE_CALL, "8001", "710", "route", now=0)
    assert len(tracker.calls[QUEUE_CALL].channels) == 3
    hangups = [crm.payload["chan"] for e in stream[split:] if (crm := tracker.on_event(e)) is not None]
    assert hangups == [
        "Local/agent1@queue-agents-00000000;2",
        "Local/agent1@queue-agents-00000000;1",
        "PJSIP/8001-00000000",
    ]
    assert tracker.calls == {} and tracker.live == {}
