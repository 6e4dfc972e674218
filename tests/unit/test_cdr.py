"""``Cdr`` events (cdr_manager) end a reconciled call at Asterisk's own end time.

The test PBX does not enable ``cdr_manager`` (no ``cdr_manager.conf``), so
the events here are Asterisk 22's ``Cdr`` event as its documentation and
``cdr_manager.c`` give it (times in the PBX's local time), fed to the real
registry and lifecycle.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from salara.ami.messages import Event
from salara.calls.cdr import cdr_time
from salara.calls.lifecycle import CallLifecycle
from salara.calls.registry import CallRegistry
from salara.calls.tracking import CallTracker
from salara.config import Event as Modes
from salara.utc import utc_timestamp

PBX_TZ = timezone(timedelta(hours=3))
"""The PBX's local time in these tests (Europe/Moscow: no daylight saving)."""
CALL = "1764642025.17"


def event(text: str) -> Event:
    lines = [line.split(": ", 1) if ": " in line else (line.rstrip(":"), "") for line in text.strip().splitlines()]
    name = lines[0][1]
    return Event(name, tuple((key, value) for key, value in lines[1:]))


def cdr(end: str, uniqueid: str = CALL) -> Event:
    return event(
        f"""
Event: Cdr
Privilege: cdr,all
AccountCode:
Source: 5557001
Destination: 8001
DestinationContext: phones
CallerID: "Customer" <5557001>
Channel: PJSIP/trunk-00000011
DestinationChannel: PJSIP/8001-00000012
LastApplication: Dial
LastData: PJSIP/8001,20
StartTime: 2025-12-02 05:20:25
AnswerTime: 2025-12-02 05:20:27
EndTime: {end}
Duration: 6
BillableSeconds: 4
Disposition: ANSWERED
AMAFlags: DOCUMENTATION
UniqueID: {uniqueid}
UserField:
"""
    )


def pbx_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=PBX_TZ).timestamp()


def test_cdr_times_are_the_pbxs_local_time() -> None:
    assert cdr_time("2025-12-02 05:20:31", PBX_TZ) == pbx_time("2025-12-02 05:20:31")
    assert cdr_time("2025-12-02 02:20:31", UTC) == pbx_time("2025-12-02 05:20:31")  # usegmtime = yes
    assert cdr_time("", PBX_TZ) is None and cdr_time("yesterday", PBX_TZ) is None and cdr_time(None) is None


def live_call(registry: CallRegistry) -> CallTracker:
    tracker = CallTracker(Modes(hangup=1), registry)
    start = pbx_time("2025-12-02 05:20:25")
    for name, extra in (("Newchannel", {"ChannelState": "4"}), ("Newstate", {"ChannelState": "6"})):
        headers = {"Uniqueid": CALL, "Linkedid": CALL, "Channel": "PJSIP/trunk-00000011", "CallerIDNum": "5557001"}
        headers |= {**extra, "Context": "phones", "Exten": "8001"}
        tracker.on_event(Event(name, tuple(headers.items())), start, 0)
    return tracker


def test_a_reconciled_call_ends_at_its_cdr_end_time_and_is_not_approximate() -> None:
    registry = CallRegistry()
    registry.cdr_tz = PBX_TZ
    lifecycle = CallLifecycle(registry)
    tracker = live_call(registry)
    lifecycle.take()
    # Its Hangups went unseen; the CDR, posted later (cdr.conf batch), came while connected.
    tracker.on_event(cdr("2025-12-02 05:20:31"), pbx_time("2025-12-02 05:21:00"), 1)
    assert lifecycle.take() == []  # nothing to tell until the call is found ended
    found_gone = pbx_time("2025-12-02 05:25:00")
    tracker.sweep([], wall=found_gone, mono=300.0, grace_s=30)
    [ended] = lifecycle.take()
    assert ended.name == "call.ended"
    assert ended.body["reconciled"] is True and "approximate" not in ended.body
    assert ended.body["ended_at"] == utc_timestamp(pbx_time("2025-12-02 05:20:31")) == "2025-12-02T02:20:31.000Z"


def test_the_latest_cdr_of_the_call_counts_and_one_of_another_call_none() -> None:
    registry = CallRegistry()
    registry.cdr_tz = PBX_TZ
    lifecycle = CallLifecycle(registry)
    tracker = live_call(registry)
    lifecycle.take()
    for end in ("2025-12-02 05:20:33", "2025-12-02 05:20:31", ""):
        tracker.on_event(cdr(end), pbx_time("2025-12-02 05:21:00"), 1)
    tracker.on_event(cdr("2025-12-02 05:24:00", uniqueid="1764642025.99"), pbx_time("2025-12-02 05:24:01"), 2)
    tracker.sweep([], wall=pbx_time("2025-12-02 05:25:00"), mono=300.0, grace_s=30)
    [ended] = lifecycle.take()
    assert ended.body["ended_at"] == "2025-12-02T02:20:33.000Z"


def test_without_a_cdr_the_reconciled_end_is_approximate() -> None:
    registry = CallRegistry()
    lifecycle = CallLifecycle(registry)
    tracker = live_call(registry)
    lifecycle.take()
    gone = pbx_time("2025-12-02 05:25:00")
    tracker.sweep([], wall=gone, mono=300.0, grace_s=30)
    [ended] = lifecycle.take()
    assert (ended.body["reconciled"], ended.body["approximate"]) == (True, True)
    assert ended.body["ended_at"] == utc_timestamp(gone)


def test_a_cdr_after_the_hangups_changes_nothing() -> None:
    registry = CallRegistry()
    registry.cdr_tz = PBX_TZ
    lifecycle = CallLifecycle(registry)
    tracker = live_call(registry)
    hangup_at = pbx_time("2025-12-02 05:20:30")
    headers = (("Uniqueid", CALL), ("Linkedid", CALL), ("Channel", "PJSIP/trunk-00000011"), ("Cause", "16"))
    tracker.on_event(Event("Hangup", headers), hangup_at, 1)
    tracker.on_event(cdr("2025-12-02 05:20:31"), hangup_at + 1, 2)
    ended = [e for e in lifecycle.take() if e.name == "call.ended"]
    assert len(ended) == 1 and ended[0].body["ended_at"] == utc_timestamp(hangup_at)
    assert "reconciled" not in ended[0].body and "approximate" not in ended[0].body
