"""``Cdr`` events (Asterisk's ``cdr_manager``): when a call really ended, for a call whose Hangups went unseen.

Asterisk 22's ``cdr_manager`` sends one ``Cdr`` event per CDR record with
``AccountCode, Source, Destination, DestinationContext, CallerID, Channel,
DestinationChannel, LastApplication, LastData, StartTime, AnswerTime,
EndTime, Duration, BillableSeconds, Disposition, AMAFlags, UniqueID,
UserField`` (and what ``[mappings]`` in ``cdr_manager.conf`` adds, e.g.
``LinkedID``). Its times are ``YYYY-MM-DD HH:MM:SS`` in the PBX's local
time, unless ``cdr_manager.conf`` says ``usegmtime = yes`` (then UTC).

The call model keeps the latest ``EndTime`` of its calls' records
(:attr:`Call.cdr_ended_at <salara.calls.call.Call.cdr_ended_at>`): when a
resynchronisation then finds the call gone (salara missed its Hangups), the
call ends at that time, and its ``call.ended`` is not ``approximate``.

Pure: the time zone is an argument (None: the local time of the machine
salara runs on, the PBX's when salara runs beside it).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from salara.ami.messages import Event

if TYPE_CHECKING:
    from salara.calls.registry import CallRegistry

CDR_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def cdr_time(text: str | None, tz: tzinfo | None = None) -> float | None:
    """A ``Cdr`` time (``2026-12-02 05:20:31``, local time in ``tz``; None: this machine's) as Unix seconds.

    None for an empty or unreadable time (``AnswerTime`` of an unanswered call is empty).

    >>> from datetime import timezone, timedelta
    >>> cdr_time("2026-12-02 05:20:31", timezone(timedelta(hours=1)))
    1796185231.0
    >>> cdr_time("", timezone.utc) is None
    True
    """
    if not text:
        return None
    try:
        naive = datetime.strptime(text.strip(), CDR_TIME_FORMAT)
    except ValueError:
        return None
    return naive.replace(tzinfo=tz).timestamp() if tz is not None else naive.timestamp()


def fold_cdr(registry: CallRegistry, event: Event, tz: tzinfo | None = None) -> str | None:
    """Note a ``Cdr`` event's ``EndTime`` on the live call of its ``UniqueID`` (or ``LinkedID``); the call's id.

    Only a call still live in the registry takes it (one whose Hangups were
    seen has ended at their time already).
    """
    end = cdr_time(event.get("EndTime"), tz)
    if end is None:
        return None
    uniqueid = event.get("UniqueID") or ""
    channel = registry.channels.get(uniqueid)
    linkedid = channel.linkedid if channel is not None else event.get("LinkedID") or uniqueid
    call = registry.calls.get(linkedid)
    if call is None:
        return None
    if call.cdr_ended_at is None or end > call.cdr_ended_at:
        call.cdr_ended_at = end
    return None  # nothing an observer hears of until the call ends
