"""Hint states kept from ``ExtensionStatus`` events (salara.pbx.hints), on recorded Asterisk 22 bytes."""

from __future__ import annotations

from salara.ami.messages import Event, Response
from salara.ami.protocol import CLOSED, NEED_DATA, AMIConnection
from salara.pbx.hints import CONFIRM_S, MAX_HINTS, HintStates
from salara.pbx.records import ExtensionInfo, extension_state_of
from tests.transcript import load

GOOD = (0,)


def status(exten: str, context: str, hint: str, code: int) -> Event:
    return Event(
        "ExtensionStatus",
        (("Exten", exten), ("Context", context), ("Hint", hint), ("Status", str(code)), ("StatusText", "x")),
    )


def answer(exten: str, context: str, hint: str, code: int) -> ExtensionInfo:
    headers = (("Exten", exten), ("Context", context), ("Hint", hint), ("Status", str(code)))
    return extension_state_of(exten, context, Response("Success", headers), GOOD)


def test_the_recorded_session_is_answered_from_events_after_one_read_each() -> None:
    """Replays extensionstate.txt: each read's answer is kept, each later ExtensionStatus moves it."""
    hints = HintStates(GOOD)
    asked: dict[str, tuple[str, str]] = {}
    conn = AMIConnection()
    mono = 100.0
    checked = 0
    for block in load("extensionstate.txt"):
        if block.sent:
            fields = dict(line.split(": ", 1) for line in block.data.decode().splitlines() if ": " in line)
            if fields.get("Action") == "ExtensionState":
                asked[fields["ActionID"]] = (fields["Exten"], fields["Context"])
            continue
        conn.receive_data(block.data)
        while (message := conn.next_event()) not in (NEED_DATA, CLOSED):
            if isinstance(message, Event):
                hints.on_event(message)
                exten, context, hint = message.get("Exten"), message.get("Context"), message.get("Hint")
                if message.name == "ExtensionStatus" and (exten, context) in asked.values():
                    known = hints.get(exten or "", context or "", mono)
                    assert known is not None and known.state == int(message.get("Status") or "")
                    assert known.hint == hint
                    checked += 1
            elif isinstance(message, Response) and message.action_id in asked:
                exten, context = asked[message.action_id]
                info = extension_state_of(exten, context, message, GOOD)
                assert hints.answered(info, hints.reading(), mono) == info
                assert hints.get(exten, context, mono) == (info if info.hint and info.state >= 0 else None)
    assert checked >= 2  # 9001 InUse, then ONHOLD, after their reads


def test_a_hint_reached_through_an_include_follows_the_events_of_the_context_holding_it() -> None:
    hints = HintStates(GOOD)
    hints.answered(answer("9001", "phones", "Custom:9001", 0), hints.reading(), 0.0)
    hints.on_event(status("9001", "sim", "Custom:9001", 1))
    known = hints.get("9001", "phones", 1.0)
    assert known is not None
    assert (known.exten, known.context, known.state, known.state_text, known.available) == (
        "9001",
        "phones",
        1,
        "InUse",
        False,
    )


def test_an_event_during_the_read_wins_over_its_answer() -> None:
    hints = HintStates(GOOD)
    token = hints.reading()
    hints.on_event(status("8001", "phones", "PJSIP/8001", 1))  # announced after the action was sent
    kept = hints.answered(answer("8001", "phones", "PJSIP/8001", 0), token, 0.0)
    assert kept.state == 1
    assert hints.get("8001", "phones", 0.5) == kept
    # An event older than the read (before its token) does not override the answer.
    hints.on_event(status("8002", "phones", "PJSIP/8002", 4))
    token = hints.reading()
    assert hints.answered(answer("8002", "phones", "PJSIP/8002", 0), token, 0.0).state == 0


def test_what_is_never_announced_is_read_again() -> None:
    hints = HintStates(GOOD)
    # No hint: asked every time, so a hint added later is seen at once.
    assert hints.answered(answer("7777", "phones", "", -1), hints.reading(), 0.0).state == -1
    assert hints.get("7777", "phones", 0.0) is None
    # A hint's read is trusted CONFIRM_S seconds: a removed hint is not announced.
    hints.answered(answer("9002", "sim", "Custom:9002", 0), hints.reading(), 10.0)
    assert hints.get("9002", "sim", 10.0 + CONFIRM_S - 0.01) is not None
    assert hints.get("9002", "sim", 10.0 + CONFIRM_S) is None
    # Removed (-2) while known: asked again at once.
    hints.answered(answer("9003", "sim", "Custom:9003", 0), hints.reading(), 20.0)
    hints.on_event(status("9003", "sim", "Custom:9003", -2))
    assert hints.get("9003", "sim", 20.0) is None
    # The AMI link dropped: nothing is known any more.
    hints.answered(answer("9003", "sim", "Custom:9003", 0), hints.reading(), 30.0)
    hints.clear()
    assert hints.get("9003", "sim", 30.0) is None and len(hints) == 0


def test_at_most_max_hints_are_kept() -> None:
    hints = HintStates(GOOD)
    for n in range(MAX_HINTS + 5):
        hints.answered(answer(str(n), "pattern", f"PJSIP/{n}", 0), hints.reading(), 0.0)
    assert len(hints) == MAX_HINTS
    assert hints.get("0", "pattern", 0.0) is None  # the oldest read went first
    assert hints.get(str(MAX_HINTS + 4), "pattern", 0.0) is not None


def test_a_reload_of_good_status_counts_the_kept_states_by_the_new_codes() -> None:
    hints = HintStates(GOOD)
    hints.answered(answer("8001", "phones", "PJSIP/8001", 1), hints.reading(), 100.0)
    kept = hints.get("8001", "phones", 100.0)
    assert kept is not None and kept.available is False  # InUse is not in (0,)
    hints.good_status = (0, 1)
    again = hints.get("8001", "phones", 100.0)
    assert again is not None and again.available is True
