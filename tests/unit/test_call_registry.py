"""The active-call registry on recorded Asterisk 22 event streams."""

from __future__ import annotations

from salara.ami.messages import Event
from salara.ami.protocol import AMIConnection
from salara.calls.call import listed_channel, parse_duration_s
from salara.calls.outcome import outcome_of
from salara.calls.registry import CallRegistry
from tests.transcript import received


def events(name: str) -> list[Event]:
    conn = AMIConnection()
    for chunk in received(name):
        conn.receive_data(chunk)
    return [m for m in conn.drain() if isinstance(m, Event)]


def feed(registry: CallRegistry, items: list[Event], start: float = 1000.0) -> None:
    """Feed events one second apart; OriginateResponse goes to ``originate_result`` by ActionID."""
    for index, event in enumerate(items):
        now = start + index
        if event.name == "OriginateResponse":
            reason = event.get("Reason")
            registry.originate_result(
                event.get("ActionID") or "", event.get("Response"), int(reason) if reason else None, now, now
            )
        registry.on_event(event, now, now)


def ev(name: str, **headers: str) -> Event:
    return Event(name, tuple((key.replace("_", "-"), value) for key, value in headers.items()))


def test_a_long_call_is_listed_while_it_lives_and_ends_answered() -> None:
    registry = CallRegistry()
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
    ended = registry.get("1795962301.30", 2000)
    assert ended is not None and ended.state == "ended"
    assert ended.outcome is not None
    assert ended.outcome.result == "answered"
    assert (ended.outcome.hangup_cause, ended.outcome.hangup_cause_text) == (16, "Normal Clearing")
    # The second call of the transcript was hung up by regex: cause 0 tells nothing, still answered.
    second = registry.get("1795962303.32", 2000)
    assert second is not None and second.outcome is not None and second.outcome.result == "answered"
    assert not registry.channels


def test_an_inbound_call_has_its_caller_and_dialled_number() -> None:
    registry = CallRegistry()
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
    registry = CallRegistry()
    call_id = "1795962284.27"
    registry.originated(call_id, "8001", "9002", "phones", wall=999)
    stream = events("originate_pjsip_direct.txt")
    for index, event in enumerate(stream):
        registry.on_event(event, 1000 + index, 1000 + index)
        if event.name == "OriginateResponse":
            registry.originate_result(
                call_id, event.get("Response"), int(event.get("Reason") or -1), 1000 + index, 1000 + index
            )
    call = registry.get(call_id, 2000)
    assert call is not None and call.outcome is not None
    assert (call.from_, call.to) == ("8001", "9002")
    assert call.outcome.result == "answered"
    assert call.outcome.originate_reason == 4
    assert "Reason 4" in call.outcome.reason and "Normal Clearing" in call.outcome.reason


def test_an_originate_to_an_unregistered_endpoint_fails_with_asterisks_reason() -> None:
    registry = CallRegistry()
    registry.originated("salara-x", "8002", "9001", "sim", wall=1)
    call = registry.get("salara-x", 1)
    assert call is not None and call.state == "dialing"
    assert registry.active() == []  # no channel yet: not an active call
    registry.originate_result("salara-x", "Failure", 0, 2, 2)
    call = registry.get("salara-x", 3)
    assert call is not None and call.state == "ended" and call.outcome is not None
    assert call.outcome.result == "failed"
    assert call.outcome.originate_reason == 0
    assert "OriginateResponse Failure, Reason 0" in call.outcome.reason


def test_channels_that_hang_up_before_the_originate_response_keep_the_call_open() -> None:
    # originate_failures.txt: Local/7777@sim (no such extension): channels come and go, then Failure.
    registry = CallRegistry()
    stream = [e for e in events("originate_failures.txt") if e.get("Linkedid") == "1795962288.28"]
    registry.originated("1795962288.28", "7777", "9001", "sim", wall=1)
    feed(registry, stream)
    call = registry.get("1795962288.28", 100)
    assert call is not None and call.state == "dialing"  # waiting for its OriginateResponse
    registry.originate_result("1795962288.28", "Failure", 0, 101, 101)
    assert call.state == "ended" and call.outcome is not None and call.outcome.result == "failed"


def test_outcomes_of_unanswered_calls_follow_the_hangup_cause() -> None:
    for cause, text, result in (
        (17, "User busy", "busy"),
        (19, "No answer", "no_answer"),
        (34, "Congestion", "failed"),
    ):
        registry = CallRegistry()
        registry.on_event(
            ev("Newchannel", Channel="PJSIP/8001-1", Uniqueid="u1", Linkedid="u1", ChannelState="5"), 1, 1
        )
        registry.on_event(
            ev("Hangup", Channel="PJSIP/8001-1", Uniqueid="u1", Linkedid="u1", Cause=str(cause), Cause_txt=text), 2, 2
        )
        call = registry.get("u1", 3)
        assert call is not None and call.outcome is not None
        assert (call.outcome.result, call.outcome.hangup_cause, call.outcome.hangup_cause_text) == (result, cause, text)


def test_originate_reasons_map_to_the_operators_leg() -> None:
    registry = CallRegistry()
    for reason, result in ((0, "failed"), (1, "failed"), (3, "no_answer"), (4, "answered"), (5, "busy"), (8, "failed")):
        call = registry.originated(f"c{reason}", "8001", "9001", "sim", wall=0)
        call.originate_reason, call.originate_response = reason, "Failure"
        outcome = outcome_of(call)
        assert outcome.operator is not None and outcome.operator.result == result
        # Unless the operator answered, the call got no further: its result is the operator's leg's.
        assert outcome.result == (result if reason != 4 else "unknown")


def placed(registry: CallRegistry, call_id: str, to: str) -> None:
    """A call salara placed from 8001 to ``to``: 8001's channel rings, answers, OriginateResponse Success 4."""
    registry.originated(call_id, "8001", to, "phones", wall=1)
    chan = "PJSIP/8001-00000029"
    registry.on_event(ev("Newchannel", Channel=chan, Uniqueid=call_id, Linkedid=call_id, ChannelState="0"), 1, 1)
    registry.on_event(ev("Newexten", Channel=chan, Uniqueid=call_id, Linkedid=call_id, ChannelState="0",
                         Application="AppDial2", AppData="(Outgoing Line)"), 1, 1)  # fmt: skip
    registry.on_event(ev("Newstate", Channel=chan, Uniqueid=call_id, Linkedid=call_id, ChannelState="5"), 2, 2)
    registry.on_event(ev("Newstate", Channel=chan, Uniqueid=call_id, Linkedid=call_id, ChannelState="6"), 3, 3)
    registry.originate_result(call_id, "Success", 4, 3, 3)


def exten(call_id: str, application: str, data: str = "") -> Event:
    return ev("Newexten", Channel="PJSIP/8001-00000029", Uniqueid=call_id, Linkedid=call_id, ChannelState="6",
              Application=application, AppData=data)  # fmt: skip


def hangup(
    call_id: str, cause: str, text: str, uniqueid: str | None = None, chan: str = "PJSIP/8001-00000029"
) -> Event:
    return ev("Hangup", Channel=chan, Uniqueid=uniqueid or call_id, Linkedid=call_id, Cause=cause, Cause_txt=text)


def test_a_call_to_an_unregistered_endpoint_fails_although_the_operator_answered() -> None:
    # Asterisk 22: 8001 answers, the dialplan runs Dial(PJSIP/8002,20), which finds no contact.
    registry = CallRegistry()
    placed(registry, "salara-a", "8002")
    call = registry.calls["salara-a"]
    assert call.state == "ringing" and call.answered_at is None  # only the operator has answered
    registry.on_event(exten("salara-a", "NoOp", "Call to 8002"), 4, 4)
    registry.on_event(exten("salara-a", "Dial", "PJSIP/8002,20"), 4, 4)
    for value in ("", "CHANUNAVAIL"):
        registry.on_event(ev("VarSet", Channel="PJSIP/8001-00000029", Uniqueid="salara-a", Linkedid="salara-a",
                             Variable="DIALSTATUS", Value=value), 4, 4)  # fmt: skip
    registry.on_event(exten("salara-a", "Hangup"), 4, 4)
    registry.on_event(hangup("salara-a", "3", "No route to destination"), 5, 5)
    outcome = call.outcome
    assert outcome is not None and call.answered_at is None
    assert (outcome.result, outcome.dial_status, outcome.hangup_cause) == ("failed", "CHANUNAVAIL", 3)
    assert outcome.operator is not None and (outcome.operator.result, outcome.operator.originate_reason) == (
        "answered",
        4,
    )
    assert "Dial CHANUNAVAIL" in outcome.reason and "No route to destination" in outcome.reason
    assert "operator: OriginateResponse Success, Reason 4" in outcome.reason
    assert registry.outcomes == {"failed": 1}


def test_a_call_that_rings_and_is_never_answered_is_no_answer() -> None:
    registry = CallRegistry()
    placed(registry, "salara-b", "9998")
    registry.on_event(exten("salara-b", "Ringing"), 4, 4)
    registry.on_event(exten("salara-b", "Wait", "60"), 4, 4)
    call = registry.calls["salara-b"]
    assert call.state == "ringing"
    registry.on_event(hangup("salara-b", "16", "Normal Clearing"), 9, 9)  # hung up after a few seconds
    assert call.outcome is not None and call.outcome.result == "no_answer" and call.answered_at is None
    assert call.outcome.operator is not None and call.outcome.operator.result == "answered"


def test_a_dialplan_that_answers_the_call_itself_is_answered() -> None:
    registry = CallRegistry()
    placed(registry, "salara-c", "9001")
    registry.on_event(exten("salara-c", "Answer"), 4, 4)
    call = registry.calls["salara-c"]
    assert call.state == "up" and call.answered_at == 4
    registry.on_event(exten("salara-c", "Wait", "5"), 4, 4)
    registry.on_event(hangup("salara-c", "16", "Normal Clearing"), 9, 9)
    assert call.outcome is not None and call.outcome.result == "answered"
    assert "Answer()" in call.outcome.reason


def test_a_dialled_channel_decides_the_outcome() -> None:
    for status, up, cause, result in (
        ("ANSWER", True, "16", "answered"),
        ("BUSY", False, "17", "busy"),
        ("NOANSWER", False, "19", "no_answer"),
        (None, False, "17", "busy"),  # no DIALSTATUS seen (VarSet events off): the called channel's cause
        (None, False, "34", "failed"),
    ):
        registry = CallRegistry()
        call_id = f"salara-{status}-{cause}"
        placed(registry, call_id, "8003")
        registry.on_event(exten(call_id, "Dial", "PJSIP/8003,20"), 4, 4)
        peer = "PJSIP/8003-0000002c"
        registry.on_event(ev("Newchannel", Channel=peer, Uniqueid="u2", Linkedid=call_id, ChannelState="0"), 4, 4)
        registry.on_event(ev("Newstate", Channel=peer, Uniqueid="u2", Linkedid=call_id, ChannelState="5"), 5, 5)
        if up:
            registry.on_event(ev("Newstate", Channel=peer, Uniqueid="u2", Linkedid=call_id, ChannelState="6"), 6, 6)
        registry.on_event(hangup(call_id, cause, "x", uniqueid="u2", chan=peer), 7, 7)
        if status:
            registry.on_event(ev("DialEnd", Channel="PJSIP/8001-00000029", Uniqueid=call_id, Linkedid=call_id,
                                 DestChannel=peer, DialStatus=status), 7, 7)  # fmt: skip
        registry.on_event(hangup(call_id, "16", "Normal Clearing"), 8, 8)
        call = registry.get(call_id, 9)
        assert call is not None and call.outcome is not None
        assert (call.outcome.result, call.outcome.dial_status) == (result, status), call.outcome
        assert (call.answered_at is not None) == up


def test_when_the_operator_does_not_answer_the_call_does_not_either() -> None:
    registry = CallRegistry()
    registry.originated("salara-d", "8001", "9001", "phones", wall=1)
    chan = "PJSIP/8001-0000002d"
    registry.on_event(ev("Newchannel", Channel=chan, Uniqueid="salara-d", Linkedid="salara-d", ChannelState="5"), 1, 1)
    registry.on_event(ev("Hangup", Channel=chan, Uniqueid="salara-d", Linkedid="salara-d", Cause="19"), 31, 31)
    registry.originate_result("salara-d", "Failure", 3, 31, 31)
    call = registry.get("salara-d", 32)
    assert call is not None and call.outcome is not None
    assert call.outcome.result == "no_answer" and call.outcome.operator is not None
    assert call.outcome.operator.result == "no_answer" and call.outcome.originate_reason == 3


def test_resync_drops_missed_channels_adds_unknown_ones_and_keeps_fresh_changes() -> None:
    registry = CallRegistry()
    registry.on_event(
        ev("Newchannel", Channel="PJSIP/8001-1", Uniqueid="gone", Linkedid="gone", ChannelState="6"), 1, 1
    )
    registry.on_event(
        ev("Newchannel", Channel="PJSIP/8001-2", Uniqueid="kept", Linkedid="kept", ChannelState="5"), 1, 1
    )
    registry.begin_resync()
    # While CoreShowChannels is on its way: one channel is born, one listed one hangs up.
    registry.on_event(ev("Newchannel", Channel="PJSIP/8003-3", Uniqueid="born", Linkedid="born"), 2, 2)
    registry.on_event(ev("Hangup", Channel="PJSIP/8001-9", Uniqueid="dead", Linkedid="dead", Cause="16"), 2, 2)
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
    ended = registry.resync([listed_channel(e) for e in listed], 100, 100).ended
    assert ended == ["gone"]
    assert set(registry.channels) == {"kept", "new", "born"}
    assert registry.channels["kept"].state == 6
    new = registry.calls["new"]
    assert new.created_at == 100 - 65 and new.from_ == "5559999" and new.to == "9999"
    gone = registry.get("gone", 100)
    assert gone is not None and gone.outcome is not None and gone.outcome.result == "answered"


def test_ended_calls_are_bounded_by_count_and_age() -> None:
    registry = CallRegistry(max_ended=3, ended_ttl_s=60)
    for index in range(5):
        uid = f"u{index}"
        registry.on_event(ev("Newchannel", Channel=f"PJSIP/x-{index}", Uniqueid=uid, Linkedid=uid), index, index)
        registry.on_event(
            ev("Hangup", Channel=f"PJSIP/x-{index}", Uniqueid=uid, Linkedid=uid, Cause="16"), index, index
        )
    assert list(registry.ended) == ["u2", "u3", "u4"]
    assert registry.get("u4", 10) is not None
    assert registry.get("u4", 100) is None  # older than a minute


def test_live_channels_are_bounded() -> None:
    registry = CallRegistry(max_channels=2)
    for index in range(3):
        uid = f"u{index}"
        registry.on_event(ev("Newchannel", Channel=f"PJSIP/x-{index}", Uniqueid=uid, Linkedid=uid), index, index)
    assert set(registry.channels) == {"u1", "u2"}
    assert registry.evicted == 1


def test_caller_id_and_connected_line_updates() -> None:
    registry = CallRegistry()
    registry.on_event(
        ev("Newchannel", Channel="PJSIP/8001-1", Uniqueid="u", Linkedid="u", CallerIDNum="<unknown>"), 1, 1
    )
    registry.on_event(ev("NewCallerid", Uniqueid="u", CallerIDNum="8001", CallerIDName="Ann"), 2, 2)
    registry.on_event(ev("NewConnectedLine", Uniqueid="u", ConnectedLineNum="9002", ConnectedLineName="Bob"), 3, 3)
    registry.on_event(ev("Newstate", Uniqueid="u", Channel="PJSIP/8001-1", ChannelState="6"), 4, 4)
    channel = registry.channels["u"]
    assert (channel.caller_number, channel.caller_name) == ("8001", "Ann")
    assert (channel.connected_number, channel.connected_name) == ("9002", "Bob")
    assert channel.answered_at == 4 and registry.calls["u"].answered_at == 4


def test_parse_duration() -> None:
    assert parse_duration_s("01:02:03") == 3723
    assert parse_duration_s("garbage") == 0
    assert parse_duration_s(None) == 0
