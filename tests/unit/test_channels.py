"""The active-call registry on recorded Asterisk 22 event streams."""

from __future__ import annotations

from salara.ami.messages import Event
from salara.ami.protocol import AMIConnection
from salara.channels import ChannelRegistry, outcome_of, parse_duration_s
from tests.transcript import received


def events(name: str) -> list[Event]:
    conn = AMIConnection()
    for chunk in received(name):
        conn.receive_data(chunk)
    return [m for m in conn.drain() if isinstance(m, Event)]


def feed(registry: ChannelRegistry, items: list[Event], start: float = 1000.0) -> None:
    """Feed events one second apart; OriginateResponse goes to ``originate_result`` by ActionID."""
    for index, event in enumerate(items):
        now = start + index
        if event.name == "OriginateResponse":
            reason = event.get("Reason")
            registry.originate_result(
                event.get("ActionID") or "", event.get("Response"), int(reason) if reason else None, now
            )
        registry.on_event(event, now)


def ev(name: str, **headers: str) -> Event:
    return Event(name, tuple((key.replace("_", "-"), value) for key, value in headers.items()))


def test_a_long_call_is_listed_while_it_lives_and_ends_answered() -> None:
    registry = ChannelRegistry()
    stream = events("status_channels_hangup.txt")
    first_hangup = next(i for i, e in enumerate(stream) if e.name == "Hangup")
    feed(registry, stream[:first_hangup])
    [call] = registry.active()
    assert call.id == "1795962301.30"
    assert call.state == "up"
    assert [c.name for c in call.channels.values()] == ["Local/9999@sim-0000000a;1", "Local/9999@sim-0000000a;2"]
    assert call.to == "9999" and call.context == "sim"
    feed(registry, stream[first_hangup:])
    assert registry.active() == []
    ended = registry.get("1795962301.30", now=2000)
    assert ended is not None and ended.state == "ended"
    assert ended.outcome is not None
    assert ended.outcome.result == "answered"
    assert (ended.outcome.hangup_cause, ended.outcome.hangup_cause_text) == (16, "Normal Clearing")
    # The second call of the transcript was hung up by regex: cause 0 tells nothing, still answered.
    second = registry.get("1795962303.32", now=2000)
    assert second is not None and second.outcome is not None and second.outcome.result == "answered"
    assert not registry.channels


def test_an_inbound_call_has_its_caller_and_dialled_number() -> None:
    registry = ChannelRegistry()
    stream = events("inbound_ua_to_queue.txt")
    feed(registry, stream[: next(i for i, e in enumerate(stream) if e.name == "Hangup")])
    [call] = registry.active()
    assert (call.from_, call.to, call.context) == ("8001", "710", "phones")
    assert call.origin is None
    assert len(call.channels) == 3  # the phone and both halves of the agent's Local channel
    feed(registry, stream)
    assert registry.active() == []
    assert registry.outcomes["answered"] == 1


def test_a_placed_call_ends_with_the_originate_reason() -> None:
    registry = ChannelRegistry()
    call_id = "1795962284.27"
    registry.originated(call_id, "8001", "9002", "phones", now=999)
    stream = events("originate_pjsip_direct.txt")
    for index, event in enumerate(stream):
        registry.on_event(event, 1000 + index)
        if event.name == "OriginateResponse":
            registry.originate_result(call_id, event.get("Response"), int(event.get("Reason") or -1), 1000 + index)
    call = registry.get(call_id, 2000)
    assert call is not None and call.outcome is not None
    assert (call.from_, call.to) == ("8001", "9002")
    assert call.outcome.result == "answered"
    assert call.outcome.originate_reason == 4
    assert "Reason 4" in call.outcome.reason and "Normal Clearing" in call.outcome.reason


def test_an_originate_to_an_unregistered_endpoint_fails_with_asterisks_reason() -> None:
    registry = ChannelRegistry()
    registry.originated("salara-x", "8002", "9001", "sim", now=1)
    call = registry.get("salara-x", 1)
    assert call is not None and call.state == "dialing"
    assert registry.active() == []  # no channel yet: not an active call
    registry.originate_result("salara-x", "Failure", 0, now=2)
    call = registry.get("salara-x", 3)
    assert call is not None and call.state == "ended" and call.outcome is not None
    assert call.outcome.result == "failed"
    assert call.outcome.originate_reason == 0
    assert "OriginateResponse Failure, Reason 0" in call.outcome.reason


def test_channels_that_hang_up_before_the_originate_response_keep_the_call_open() -> None:
    # originate_failures.txt: Local/7777@sim (no such extension): channels come and go, then Failure.
    registry = ChannelRegistry()
    stream = [e for e in events("originate_failures.txt") if e.get("Linkedid") == "1795962288.28"]
    registry.originated("1795962288.28", "7777", "9001", "sim", now=1)
    feed(registry, stream)
    call = registry.get("1795962288.28", 100)
    assert call is not None and call.state == "dialing"  # waiting for its OriginateResponse
    registry.originate_result("1795962288.28", "Failure", 0, now=101)
    assert call.state == "ended" and call.outcome is not None and call.outcome.result == "failed"


def test_outcomes_of_unanswered_calls_follow_the_hangup_cause() -> None:
    for cause, text, result in (
        (17, "User busy", "busy"),
        (19, "No answer", "no_answer"),
        (34, "Congestion", "failed"),
    ):
        registry = ChannelRegistry()
        registry.on_event(ev("Newchannel", Channel="PJSIP/8001-1", Uniqueid="u1", Linkedid="u1", ChannelState="5"), 1)
        registry.on_event(
            ev("Hangup", Channel="PJSIP/8001-1", Uniqueid="u1", Linkedid="u1", Cause=str(cause), Cause_txt=text), 2
        )
        call = registry.get("u1", 3)
        assert call is not None and call.outcome is not None
        assert (call.outcome.result, call.outcome.hangup_cause, call.outcome.hangup_cause_text) == (result, cause, text)


def test_originate_reasons_map_to_outcomes() -> None:
    registry = ChannelRegistry()
    for reason, result in ((0, "failed"), (1, "failed"), (3, "no_answer"), (4, "answered"), (5, "busy"), (8, "failed")):
        call = registry.originated(f"c{reason}", "8001", "9001", "sim", now=0)
        call.originate_reason, call.originate_response = reason, "Failure"
        assert outcome_of(call).result == result


def test_resync_drops_missed_channels_adds_unknown_ones_and_keeps_fresh_changes() -> None:
    registry = ChannelRegistry()
    registry.on_event(ev("Newchannel", Channel="PJSIP/8001-1", Uniqueid="gone", Linkedid="gone", ChannelState="6"), 1)
    registry.on_event(ev("Newchannel", Channel="PJSIP/8001-2", Uniqueid="kept", Linkedid="kept", ChannelState="5"), 1)
    registry.begin_resync()
    # While CoreShowChannels is on its way: one channel is born, one listed one hangs up.
    registry.on_event(ev("Newchannel", Channel="PJSIP/8003-3", Uniqueid="born", Linkedid="born"), 2)
    registry.on_event(ev("Hangup", Channel="PJSIP/8001-9", Uniqueid="dead", Linkedid="dead", Cause="16"), 2)
    listed = [
        ev("CoreShowChannel", Channel="PJSIP/8001-2", Uniqueid="kept", Linkedid="kept", ChannelState="6"),
        ev(
            "CoreShowChannel",
            Channel="Local/9999@sim-1;1",
            Uniqueid="new",
            Linkedid="new",
            ChannelState="6",
            CallerIDNum="5559999",
            Exten="9999",
            Context="sim",
            Duration="00:01:05",
        ),
        ev("CoreShowChannel", Channel="PJSIP/8001-9", Uniqueid="dead", Linkedid="dead", ChannelState="6"),
    ]
    ended = registry.resync(listed, now=100)
    assert ended == ["gone"]
    assert set(registry.channels) == {"kept", "new", "born"}
    assert registry.channels["kept"].state == 6
    new = registry.calls["new"]
    assert new.created_at == 100 - 65 and new.from_ == "5559999" and new.to == "9999"
    gone = registry.get("gone", 100)
    assert gone is not None and gone.outcome is not None and gone.outcome.result == "answered"


def test_ended_calls_are_bounded_by_count_and_age() -> None:
    registry = ChannelRegistry(max_ended=3, ended_ttl_s=60)
    for index in range(5):
        uid = f"u{index}"
        registry.on_event(ev("Newchannel", Channel=f"PJSIP/x-{index}", Uniqueid=uid, Linkedid=uid), index)
        registry.on_event(ev("Hangup", Channel=f"PJSIP/x-{index}", Uniqueid=uid, Linkedid=uid, Cause="16"), index)
    assert list(registry.ended) == ["u2", "u3", "u4"]
    assert registry.get("u4", now=10) is not None
    assert registry.get("u4", now=100) is None  # older than a minute


def test_live_channels_are_bounded() -> None:
    registry = ChannelRegistry(max_channels=2)
    for index in range(3):
        uid = f"u{index}"
        registry.on_event(ev("Newchannel", Channel=f"PJSIP/x-{index}", Uniqueid=uid, Linkedid=uid), index)
    assert set(registry.channels) == {"u1", "u2"}
    assert registry.evicted == 1


def test_caller_id_and_connected_line_updates() -> None:
    registry = ChannelRegistry()
    registry.on_event(ev("Newchannel", Channel="PJSIP/8001-1", Uniqueid="u", Linkedid="u", CallerIDNum="<unknown>"), 1)
    registry.on_event(ev("NewCallerid", Uniqueid="u", CallerIDNum="8001", CallerIDName="Ann"), 2)
    registry.on_event(ev("NewConnectedLine", Uniqueid="u", ConnectedLineNum="9002", ConnectedLineName="Bob"), 3)
    registry.on_event(ev("Newstate", Uniqueid="u", Channel="PJSIP/8001-1", ChannelState="6"), 4)
    channel = registry.channels["u"]
    assert (channel.caller_number, channel.caller_name) == ("8001", "Ann")
    assert (channel.connected_number, channel.connected_name) == ("9002", "Bob")
    assert channel.answered_at == 4 and registry.calls["u"].answered_at == 4


def test_parse_duration() -> None:
    assert parse_duration_s("01:02:03") == 3723
    assert parse_duration_s("garbage") == 0
    assert parse_duration_s(None) == 0
