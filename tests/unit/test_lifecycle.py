"""Call lifecycle events decided from the one registry's fold, on recorded Asterisk 22 event streams."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from salara.ami.messages import Event
from salara.calls.call import ListedChannel
from salara.calls.lifecycle import CallLifecycle, LifecycleEvent, endpoint
from salara.calls.registry import CallRegistry
from salara.calls.tracking import CallTracker, TrackingChanges
from salara.config import Event as Modes
from salara.utc import utc_timestamp
from tests.unit.test_calls import DIAL_CALL, DIAL_CHANNELS, QUEUE_CALL, events

QUEUE_FILE = "inbound_ua_to_queue.txt"
DIRECT_CALL = "1795962284.27"  # originate_pjsip_direct.txt: PJSIP/8001 answers, 9002 runs Answer, Wait 2, Hangup
START = 1000.0


def run(
    registry: CallRegistry, lifecycle: CallLifecycle, stream: Sequence[Event], start: float = START
) -> list[tuple[int, LifecycleEvent]]:
    """Feed events one second apart (``start + index``); the lifecycle events taken, each with its event's index.

    An ``OriginateResponse`` goes to ``originate_result`` first, as call control does.
    """
    taken = []
    for index, event in enumerate(stream):
        now = start + index
        if event.name == "OriginateResponse":
            reason = event.get("Reason")
            registry.originate_result(
                event.get("Uniqueid") or "", event.get("Response"), int(reason) if reason else None, now, now
            )
        registry.on_event(event, now, now)
        taken += [(index, lifecycle_event) for lifecycle_event in lifecycle.take()]
    return taken


def feed(registry: CallRegistry, stream: Sequence[Event], wall: float) -> None:
    """Feed events at ``wall``; an ``OriginateResponse`` goes to ``originate_result``, as call control does."""
    for event in stream:
        if event.name == "OriginateResponse":
            reason = event.get("Reason")
            registry.originate_result(
                event.get("Uniqueid") or "", event.get("Response"), int(reason) if reason else None, wall, wall
            )
        registry.on_event(event, wall, wall)


def index_of(stream: Sequence[Event], predicate: Callable[[Event], bool]) -> int:
    return next(i for i, e in enumerate(stream) if predicate(e))


def ts(seconds: float) -> str:
    return utc_timestamp(seconds)


def test_a_placed_call_that_is_answered_goes_started_ringing_answered_answered_ended() -> None:
    registry = CallRegistry()
    lifecycle = CallLifecycle(registry)
    registry.originated(DIRECT_CALL, "8001", "9002", "phones", 999.0, client_state="lead-4711")
    stream = events("originate_pjsip_direct.txt")
    taken = run(registry, lifecycle, stream)
    at, got = [index for index, _ in taken], [event for _, event in taken]
    assert [(e.name, e.body.get("leg")) for e in got] == [
        ("call.started", None),
        ("call.ringing", "operator"),
        ("call.answered", "operator"),
        ("call.answered", "called"),
        ("call.ended", None),
    ]
    common = {
        "call_id": DIRECT_CALL,
        "pbx": "default",
        "direction": "outbound",
        "from": "8001",
        "to": "9002",
        "operator": "8001",
        "client_state": "lead-4711",
    }
    for event in got:
        assert event.linkedid == DIRECT_CALL
        assert {key: event.body[key] for key in common} == common
    ringing_at = index_of(stream, lambda e: e.name == "Newstate" and e.get("ChannelState") == "5")
    up_at = index_of(stream, lambda e: e.name == "Newstate" and e.get("ChannelState") == "6")
    answer_at = index_of(stream, lambda e: e.name == "Newexten" and e.get("Application") == "Answer")
    hangup_at = index_of(stream, lambda e: e.name == "Hangup")
    newchannel_at = index_of(stream, lambda e: e.name == "Newchannel")
    # Each is decided by the event that shows it, with that event's time (the start: when salara placed it).
    assert at == [newchannel_at, ringing_at, up_at, answer_at, hangup_at]
    started, ringing, operator, called, ended = (e.body for e in got)
    assert started["timestamp"] == ts(999.0) and started["channel"] == "PJSIP/8001-00000005"
    assert (ringing["channel"], ringing["endpoint"], ringing["timestamp"]) == (
        "PJSIP/8001-00000005",
        "PJSIP/8001",
        ts(START + ringing_at),
    )
    assert operator["timestamp"] == ts(START + up_at)
    assert (called["answered_by"], called["channel"], called["timestamp"]) == ("Answer()", None, ts(START + answer_at))
    assert ended == {
        **common,
        "caller_name": "CRM",  # the operator's channel's, as Asterisk reports it
        "started_at": ts(999.0),
        "answered_at": ts(START + answer_at),
        "ended_at": ts(START + hangup_at),
        "duration_s": START + hangup_at - 999.0,
        "talk_s": float(hangup_at - answer_at),
        "result": "answered",
        "reason": ended["reason"],
        "hangup_cause": 16,
        "hangup_cause_text": "Normal Clearing",
        "dial_status": None,
        "operator_result": "answered",
        "hung_up_by": "called",  # the dialplan's Hangup() on the operator's channel: the called side
        "queue": None,
        "agent": None,
        "transfers": [],
        "missed": False,
        "recording": None,
        "timestamp": ts(START + hangup_at),
    }
    assert list(ended)[:6] == ["call_id", "pbx", "direction", "from", "to", "operator"]
    assert list(ended)[-2:] == ["timestamp", "client_state"]
    # The result is /v1's outcome, word for word.
    call = registry.get(DIRECT_CALL, START + 100)
    assert call is not None and call.outcome is not None and ended["reason"] == call.outcome.reason
    assert lifecycle.take() == []


def test_a_placed_call_announced_but_never_sent_tells_nothing() -> None:
    registry = CallRegistry()
    lifecycle = CallLifecycle(registry)
    registry.originated("salara-x", "8001", "9002", "phones", 1.0)
    assert lifecycle.take() == []
    registry.forget("salara-x")  # AMI refused the Originate
    assert lifecycle.take() == []


def test_a_placed_call_that_never_got_a_channel_starts_and_ends_at_once() -> None:
    registry = CallRegistry()
    lifecycle = CallLifecycle(registry)
    touched: list[int] = []
    registry.on_touch = lambda: touched.append(1)
    registry.originated("salara-x", "8002", "9001", "phones", 10.0, client_state="s")
    registry.originate_result("salara-x", "Failure", 0, 12.0, 12.0)  # 8002 is not registered
    assert touched == [1, 1], "changes outside the fold of an event are told"
    started, ended = lifecycle.take()
    assert (started.name, ended.name) == ("call.started", "call.ended")
    assert started.body["channel"] is None
    assert (ended.body["result"], ended.body["operator_result"]) == ("failed", "failed")
    assert (ended.body["duration_s"], ended.body["talk_s"], ended.body["client_state"]) == (2.0, 0.0, "s")


def test_an_inbound_call_to_a_queue_names_the_queue_and_the_agent() -> None:
    registry = CallRegistry()
    got = [e for _, e in run(registry, CallLifecycle(registry, inbound_contexts=["phones"]), events(QUEUE_FILE))]
    names = [e.name for e in got]
    assert names == ["call.started", "call.answered", "call.ended"], "Local channels are not devices ringing"
    assert {e.body["direction"] for e in got} == {"inbound"}
    assert {e.body["operator"] for e in got} == {None}
    ended = got[-1].body
    assert (ended["from"], ended["to"], ended["queue"], ended["agent"]) == ("8001", "710", "710", "agent1")
    assert (ended["result"], ended["missed"]) == ("answered", False)
    # Without the context among the inbound ones, the same call is internal.
    registry = CallRegistry()
    got = [e for _, e in run(registry, CallLifecycle(registry), events(QUEUE_FILE))]
    assert {e.body["direction"] for e in got} == {"internal"}


def ev(name: str, **headers: str) -> Event:
    return Event(name, tuple((key.replace("_", "-"), value) for key, value in headers.items()))


def missed_call(registry: CallRegistry, lifecycle: CallLifecycle) -> list[LifecycleEvent]:
    """A trunk call rings PJSIP/8001; nobody answers, the caller gives up. Its lifecycle events."""
    caller = {"Uniqueid": "t.1", "Linkedid": "t.1", "Channel": "PJSIP/trunk-00000001"}
    phone = {"Uniqueid": "t.2", "Linkedid": "t.1", "Channel": "PJSIP/8001-00000002"}
    stream = [
        ev("Newchannel", **caller, ChannelState="4", CallerIDNum="5557001", Context="from-trunk", Exten="4951000"),
        ev("Newexten", **caller, ChannelState="4", Context="from-trunk", Exten="4951000", Application="Dial"),
        ev("Newchannel", **phone, ChannelState="0", CallerIDNum="8001", Context="phones", Exten="s"),
        ev("Newstate", **phone, ChannelState="5"),
        ev("HangupRequest", **caller, Cause="16"),
        ev("Hangup", **phone, ChannelState="5", Cause="16", Cause_txt="Normal Clearing"),
        ev("Hangup", **caller, ChannelState="4", Cause="16", Cause_txt="Normal Clearing"),
    ]
    return [event for _, event in run(registry, lifecycle, stream, start=100.0)]


def test_an_inbound_call_nobody_answered_is_missed() -> None:
    registry = CallRegistry()
    _, ringing, ended = missed_call(registry, CallLifecycle(registry, inbound_contexts=["from-trunk"]))
    assert (ringing.name, ringing.body["leg"], ringing.body["endpoint"]) == ("call.ringing", "called", "PJSIP/8001")
    assert ringing.body["timestamp"] == ts(103.0)
    assert ended.body["direction"] == "inbound" and ended.body["missed"] is True
    assert (ended.body["result"], ended.body["answered_at"], ended.body["talk_s"]) == ("no_answer", None, 0.0)
    assert (ended.body["from"], ended.body["to"], ended.body["hung_up_by"]) == ("5557001", "4951000", "caller")
    # Internal calls are never missed.
    registry = CallRegistry()
    assert missed_call(registry, CallLifecycle(registry))[-1].body["missed"] is False


def test_a_routed_call_is_inbound_to_the_destination_chosen() -> None:
    tracker = CallTracker(Modes())
    lifecycle = CallLifecycle(tracker.registry)
    stream = events("inbound_ua_to_queue.txt")
    split = index_of(stream, lambda e: e.name == "AgentConnect")
    for event in stream[:split]:
        tracker.on_event(event, 0.0, 0.0)
    assert {e.body["direction"] for e in lifecycle.take()} == {"internal"}, "not routed yet"
    tracker.track(QUEUE_CALL, "8001", "710", "route", wall=0, mono=0, client_state="crm-1")
    for event in stream[split:]:
        tracker.on_event(event, 0.0, 0.0)
    [ended] = lifecycle.take()
    assert (ended.body["direction"], ended.body["to"], ended.body["client_state"]) == ("inbound", "710", "crm-1")


def test_exactly_one_call_ended_even_when_the_call_comes_back() -> None:
    registry = CallRegistry()
    lifecycle = CallLifecycle(registry)
    stream = events("originate_pjsip_direct.txt")
    for event in stream:
        registry.on_event(event, 1.0, 1.0)
    assert [e.name for e in lifecycle.take()].count("call.ended") == 1
    # A late channel of the same Linkedid revives the call in the registry: nothing more is told.
    late = ev("Newchannel", Uniqueid="late.1", Linkedid=DIRECT_CALL, Channel="PJSIP/8001-00000099", ChannelState="0")
    registry.on_event(late, 2.0, 2.0)
    registry.on_event(ev("Hangup", Uniqueid="late.1", Linkedid=DIRECT_CALL, Cause="16"), 3.0, 3.0)
    assert lifecycle.take() == []


def feed_until_first_hangup(tracker: CallTracker, name: str, wall: float = 50.0) -> None:
    """Feed a recorded call up to its first Hangup (an ``OriginateResponse`` as call control takes it)."""
    stream = events(name)
    for event in stream[: index_of(stream, lambda e: e.name == "Hangup")]:
        if event.name == "OriginateResponse":
            tracker.registry.originate_result(event.get("Uniqueid") or "", event.get("Response"), 4, wall, wall)
        tracker.on_event(event, wall, wall)


def test_a_call_that_ended_while_the_link_was_down_ends_once_reconciled() -> None:
    tracker = CallTracker(Modes(hangup=1))
    lifecycle = CallLifecycle(tracker.registry)
    tracker.registry.originated(DIAL_CALL, "8001", "9001", "sim", 40.0, client_state="kept")
    feed_until_first_hangup(tracker, "originate_dial_pjsip.txt")
    before = [e.name for e in lifecycle.take()]
    assert "call.ended" not in before and before[0] == "call.started"
    # The AMI link was down while the call ended; after the login Asterisk lists none of it.
    tracker.sweep([], wall=90.0, mono=90.0, grace_s=30)
    [ended] = lifecycle.take()
    assert ended.name == "call.ended"
    body = ended.body
    assert (body["reconciled"], body["approximate"], body["client_state"]) == (True, True, "kept")
    assert body["ended_at"] == body["timestamp"] == ts(90.0), "when salara found it gone: the end of the outage"
    assert body["hung_up_by"] == "called", "the dialplan's Hangup() was seen before the link dropped"
    assert tracker.sweep([], wall=95.0, mono=95.0, grace_s=30).missed == 0
    assert lifecycle.take() == []


def test_a_call_that_ended_while_salara_was_down_ends_once_after_the_restart() -> None:
    modes = Modes(hangup=1, watch_makecall=True)
    tracker = CallTracker(modes)
    CallLifecycle(tracker.registry)
    tracker.registry.originated(DIAL_CALL, "8001", "9001", "sim", 40.0)
    tracker.track(DIAL_CALL, "8001", "9001", "makecall", wall=40.0, mono=40.0)
    feed_until_first_hangup(tracker, "originate_dial_pjsip.txt")
    stored = tracker.take_changes()
    assert stored is not None
    # salara restarts: a new model gets what was stored; what the call did was told before.
    again = CallTracker(modes)
    lifecycle = CallLifecycle(again.registry)
    again.restore(TrackingChanges(calls=stored.calls, channels=stored.channels), 100.0, 100.0)
    lifecycle.adopt()
    assert lifecycle.take() == []
    again.sweep([], wall=110.0, mono=110.0, grace_s=30)
    [ended] = lifecycle.take()
    body = ended.body
    assert ended.name == "call.ended" and body["reconciled"] is True and body["approximate"] is True
    assert (body["direction"], body["from"], body["to"], body["operator"]) == ("outbound", "8001", "9001", "8001")
    assert (body["started_at"], body["ended_at"]) == (ts(40.0), ts(110.0))
    assert body["client_state"] is None, "not among the stored tracking rows"


def test_a_call_found_at_a_resync_starts_reconciled() -> None:
    registry = CallRegistry()
    lifecycle = CallLifecycle(registry)
    registry.begin_resync()
    registry.resync([ListedChannel("r.1", "r.1", "PJSIP/8001-00000007", 6, "8001", "9999", duration_s=30)], 100, 100)
    started, answered = lifecycle.take()
    assert started.name == "call.started" and started.body["reconciled"] is True
    assert started.body["approximate"] is True and started.body["timestamp"] == ts(70.0)
    assert answered.name == "call.answered"
    registry.on_event(ev("Hangup", Uniqueid="r.1", Linkedid="r.1", Cause="16"), 120, 120)
    [ended] = lifecycle.take()
    assert "reconciled" not in ended.body and ended.body["approximate"] is True, "its start was not seen"


def test_rename_follows_the_channel_in_the_model_and_its_stored_row() -> None:
    tracker = CallTracker(Modes(hangup=1))
    tracker.track(DIAL_CALL, "5550001", "8001", "makecall", wall=0, mono=0)
    feed_until_first_hangup(tracker, "originate_dial_pjsip.txt")
    tracker.take_changes()
    rename = ev("Rename", Channel=DIAL_CHANNELS[2], Newname="PJSIP/8001-00000004<ZOMBIE>", Uniqueid="1795962280.26")
    assert tracker.on_event(rename, 1.0, 1.0) is None
    assert tracker.channels["1795962280.26"].name == "PJSIP/8001-00000004<ZOMBIE>"
    changes = tracker.take_changes()
    assert changes is not None and [row[2] for row in changes.channels] == ["PJSIP/8001-00000004<ZOMBIE>"]
    # A Hangup missed afterwards is synthesized with the name the channel has now.
    names = [e.payload["chan"] for e in tracker.sweep([], wall=2, mono=2, grace_s=30).hangups]
    assert names == [*DIAL_CHANNELS[:2], "PJSIP/8001-00000004<ZOMBIE>"]


def test_a_rename_of_an_unknown_channel_is_ignored() -> None:
    registry = CallRegistry()
    registry.on_event(ev("Rename", Channel="X/1", Newname="X/2", Uniqueid="nope"), 1, 1)
    assert registry.channels == {}


def test_transfers_are_told_and_chained_with_the_names_channels_have_now() -> None:
    registry = CallRegistry()
    lifecycle = CallLifecycle(registry)
    registry.originated(DIAL_CALL, "8001", "9001", "sim", 1.0)
    stream = events("originate_dial_pjsip.txt")
    first_hangup = index_of(stream, lambda e: e.name == "Hangup")
    feed(registry, stream[:first_hangup], 10.0)
    lifecycle.take()
    blind = ev(
        "BlindTransfer",
        Result="Success",
        TransfererChannel=DIAL_CHANNELS[0],
        TransfererUniqueid="1795962280.24",
        TransfererLinkedid=DIAL_CALL,
        TransfereeChannel=DIAL_CHANNELS[2],
        TransfereeUniqueid="1795962280.26",
        TransfereeLinkedid=DIAL_CALL,
        Context="phones",
        Extension="9003",
    )
    registry.on_event(blind, 20.0, 20.0)
    registry.redirected(DIAL_CALL, DIAL_CHANNELS[1], "9002", "sim", 21.0)
    registry.on_event(ev("BlindTransfer", Result="Fail", TransfereeUniqueid="1795962280.26"), 22.0, 22.0)
    first, second = lifecycle.take()
    assert (first.name, second.name) == ("call.transferred", "call.transferred")
    assert {k: first.body[k] for k in ("transfer", "channel", "target", "target_context", "transferer", "at")} == {
        "transfer": "blind",
        "channel": DIAL_CHANNELS[2],
        "target": "9003",
        "target_context": "phones",
        "transferer": DIAL_CHANNELS[0],
        "at": ts(20.0),
    }
    assert (second.body["transfer"], second.body["channel"], second.body["target"]) == (
        "redirect",
        DIAL_CHANNELS[1],
        "9002",
    )
    # A masquerade renames the moved channel; the summary's chain says the name it has now.
    renamed = "PJSIP/8001-00000004<MASQ>"
    registry.on_event(ev("Rename", Channel=DIAL_CHANNELS[2], Newname=renamed, Uniqueid="1795962280.26"), 23.0, 23.0)
    feed(registry, stream[first_hangup:], 30.0)
    [ended] = lifecycle.take()
    transfers = ended.body["transfers"]
    assert isinstance(transfers, list)
    assert [(t["transfer"], t["channel"]) for t in transfers] == [("blind", renamed), ("redirect", DIAL_CHANNELS[1])]


@pytest.mark.parametrize(
    ("signal", "party"),
    [
        (ev("HangupRequest", Uniqueid=DIRECT_CALL, Cause="16"), "operator"),
        (ev("SoftHangupRequest", Uniqueid=DIRECT_CALL, Cause="16"), "operator"),
        (None, "salara"),
    ],
)
def test_who_hung_up(signal: Event | None, party: str) -> None:
    registry = CallRegistry()
    lifecycle = CallLifecycle(registry)
    registry.originated(DIRECT_CALL, "8001", "9002", "phones", 1.0)
    stream = events("originate_pjsip_direct.txt")
    dialplan_hangup = index_of(stream, lambda e: e.name == "Newexten" and e.get("Application") == "Hangup")
    feed(registry, stream[:dialplan_hangup], 5.0)
    if signal is None:
        registry.hangup_requested(DIRECT_CALL)
    else:
        registry.on_event(signal, 6.0, 6.0)
    feed(registry, stream[dialplan_hangup:], 7.0)
    assert lifecycle.take()[-1].body["hung_up_by"] == party


def test_without_an_observer_the_registry_keeps_no_touched_calls() -> None:
    registry = CallRegistry()
    for event in events("originate_pjsip_direct.txt"):
        registry.on_event(event, 1.0, 1.0)
    assert registry.touched is None


def test_endpoint_of_a_channel_name() -> None:
    assert endpoint("PJSIP/8001-00000004") == "PJSIP/8001"
    assert endpoint("PJSIP/trunk-provider-0000001f") == "PJSIP/trunk-provider"
    assert endpoint("Local/8001@phones-00000008;1") == "Local/8001@phones-00000008;1"
    assert endpoint("DAHDI/1") == "DAHDI/1"


def test_with_lifecycle_events_to_the_crm_every_live_channel_is_kept_over_a_restart() -> None:
    # So that a call salara does not track still gets its one call.ended after a restart.
    tracker = CallTracker(Modes(hangup=1, lifecycle=True, payload="extended"))
    feed_until_first_hangup(tracker, QUEUE_FILE)
    changes = tracker.take_changes()
    assert changes is not None and len(changes.channels) == 3 and changes.calls == []
    again = CallTracker(Modes(hangup=1, lifecycle=True, payload="extended"))
    lifecycle = CallLifecycle(again.registry)
    again.restore(TrackingChanges(channels=changes.channels), 100.0, 100.0)
    lifecycle.adopt()
    sweep = again.sweep([], wall=110.0, mono=110.0, grace_s=30)
    assert sweep.hangups == [], "no compat Hangup for an untracked call in mode 1"
    [ended] = lifecycle.take()
    assert ended.name == "call.ended" and ended.linkedid == QUEUE_CALL and ended.body["reconciled"] is True
