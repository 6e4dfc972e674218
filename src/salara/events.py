"""From AMI events to the outbox: the call-event pipeline.

An AMI event listener feeds :class:`~salara.calls.CallTracker`; the CRM events
it yields are serialised (compat or extended payload) and written to the
outbox in one transaction per AMI read, with the call tracking that read
changed, before anything else happens to them; then the delivery worker is
woken and the live listeners (``/v1/events``) are told. After every AMI
login and periodically, tracking is checked against AMI ``CoreShowChannels``:
channels gone meanwhile get a synthesized Hangup (extended payload:
``"synthesized": true``) and tracked calls left without channels end.
Tracking stored by an earlier run is loaded with :meth:`EventPipeline.restore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from salara.ami.client import AMIClient
from salara.ami.messages import Event
from salara.calls import UNKNOWN_STATE, CallTracker, CrmEvent, ListedChannel, TrackingChanges
from salara.errors import AMIError
from salara.outbox import new_event_id

log = logging.getLogger(__name__)


class EventStore(Protocol):
    """Where serialised events go: ``add([(linkedid, body), ...], ids=[...], tracking=...)``, one transaction.

    ``tracking`` (may be None) is the call tracking changed by the same AMI
    read, ``started_at`` in Unix seconds; a store that keeps nothing over a
    restart ignores it.
    """

    def add(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ids: Sequence[str] | None = None,
        tracking: TrackingChanges | None = None,
    ) -> list[str]: ...


def event_timestamp(event: Event, received_at: float) -> str:
    """ISO 8601 UTC time of an event: Asterisk's ``Timestamp`` header if sent, else receipt time."""
    raw = event.get("Timestamp") if "Timestamp" in event else None
    try:
        seconds = float(raw) if raw else received_at
    except ValueError:
        seconds = received_at
    return utc_timestamp(seconds)


def utc_timestamp(seconds: float) -> str:
    """ISO 8601 UTC time, milliseconds, ``Z``: ``2026-11-29T14:25:01.134Z``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body_of(crm_event: CrmEvent, event_id: str, extended: bool, timestamp: str) -> bytes:
    """The JSON body POSTed to the CRM: the SPEC §2 object, plus correlation keys if extended.

    The extended payload of a synthesized Hangup (one salara did not see)
    also says ``"synthesized": true``; the compat payload is the same as any.
    """
    if not extended:
        return json.dumps(crm_event.payload, ensure_ascii=False, separators=(",", ":")).encode()
    payload: dict[str, object] = {
        **crm_event.payload,
        "uniqueid": crm_event.uniqueid,
        "linkedid": crm_event.linkedid,
        "timestamp": timestamp,
        "id": event_id,
    }
    if crm_event.synthesized:
        payload["synthesized"] = True
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _wall_offset() -> float:
    """Unix time minus monotonic time now: tracking's ``started_at`` is monotonic, the store's Unix."""
    return time.time() - time.monotonic()


class EventPipeline:
    """AMI events in, outbox rows out. Register :meth:`on_event` as an AMI listener."""

    def __init__(
        self,
        tracker: CallTracker,
        store: EventStore,
        *,
        extended: bool,
        notify: Callable[[], None] = lambda: None,
        live_listeners: Sequence[Callable[[CrmEvent, str, bytes], None]] = (),
    ) -> None:
        self.tracker = tracker
        self.store = store
        self.extended = extended
        self.notify = notify
        self.live_listeners = list(live_listeners)
        self._batch: list[tuple[str, bytes]] = []
        self._ids: list[str] = []
        self._told: list[tuple[CrmEvent, str, bytes]] = []
        """Events of the pending batch for the live listeners, told once the batch is stored."""
        self._flush_scheduled = False
        self.emitted = 0
        self._resync = asyncio.Event()
        self.lost = 0
        """Events the outbox refused (disk full, unwritable file): counted, logged."""
        tracker.on_change = self._schedule_flush  # tracking changed by the API or routing is stored too

    def restore(self, stored: TrackingChanges) -> None:
        """Load the tracking an earlier run stored (``started_at`` Unix seconds), before AMI starts."""
        offset = _wall_offset()
        calls = [(lid, caller, exten, source, at - offset) for lid, caller, exten, source, at in stored.calls]
        self.tracker.restore(TrackingChanges(calls=calls, channels=stored.channels))
        if stored.calls or stored.channels:
            log.info(
                "call tracking restored: %d tracked calls, %d live channels; checked against Asterisk at login",
                len(stored.calls),
                len(stored.channels),
            )

    def on_event(self, event: Event) -> None:
        crm_event = self.tracker.on_event(event)
        if crm_event is None:
            return
        timestamp = event_timestamp(event, time.time()) if self.extended else ""
        self._append(crm_event, timestamp)

    def _append(self, crm_event: CrmEvent, timestamp: str) -> None:
        event_id = new_event_id()
        body = body_of(crm_event, event_id, self.extended, timestamp)
        self._batch.append((crm_event.linkedid or crm_event.uniqueid, body))
        self._ids.append(event_id)
        if self.live_listeners:
            self._told.append((crm_event, event_id, body))
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        # Everything one AMI read produced goes in one transaction, right after the read.
        if not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a test, a tool): the caller flushes
                return
            self._flush_scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the pending batch and tracking changes to the store (one transaction).

        Then wake delivery and tell the live listeners about the batch's events.
        """
        self._flush_scheduled = False
        tracker = self.tracker
        changes = tracker.take_changes() if tracker.dirty else None
        if not changes:
            changes = None  # nothing to store (a channel born and gone within the batch)
        if not self._batch and changes is None:
            return
        batch, ids, told = self._batch, self._ids, self._told
        self._batch, self._ids, self._told = [], [], []
        stored = changes
        if changes is not None and changes.calls:
            offset = _wall_offset()
            calls = [(lid, caller, exten, source, at + offset) for lid, caller, exten, source, at in changes.calls]
            stored = TrackingChanges(calls, changes.ended, changes.channels, changes.removed)
        try:
            self.store.add(batch, ids=ids, tracking=stored)
        except sqlite3.Error as exc:
            if changes is not None:
                tracker.keep_changes(changes)
            if batch:
                self.lost += len(batch)
                log.error("%d call events could NOT be stored in the outbox: %s", len(batch), exc)
            else:
                log.error("call tracking could not be stored in the outbox: %s", exc)
        else:
            self.emitted += len(batch)
            if batch:
                self.notify()
        # The live stream is told after the outbox (even when it refused: the stream is all they get then).
        for crm_event, event_id, body in told:
            for listener in self.live_listeners:
                listener(crm_event, event_id, body)

    def on_ami_state(self, ready: bool) -> None:
        """AMI state listener: after a (re)login, check at once what was missed while away."""
        if ready:
            self._resync.set()

    async def sweep_forever(self, ami: AMIClient, interval_s: float, grace_s: float) -> None:
        """Every ``interval_s`` seconds, and after each AMI login, resynchronise call tracking.

        Synthesizes the Hangups missed meanwhile, ends tracked calls with no
        live channel left and drops channels whose Hangup was missed, so the
        tracker's memory stays bounded.
        """
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._resync.wait()
            self._resync.clear()
            if not (self.tracker.calls or self.tracker.live) or not ami.ready:
                continue
            try:
                await self.sweep(ami, grace_s)
            except AMIError as exc:
                log.warning("tracked-call sweep skipped: %s", exc)

    async def sweep(self, ami: AMIClient, grace_s: float) -> list[str]:
        """One check of the tracked calls against AMI ``CoreShowChannels``; returns the calls ended.

        Events that arrive while the list is on its way win over it (the
        tracker's :meth:`~salara.calls.CallTracker.begin_resync`). The
        synthesized Hangups are stored at once, in one transaction.
        """
        tracker = self.tracker
        tracker.begin_resync()
        try:
            response = await ami.action("CoreShowChannels")
        except BaseException:
            tracker.abort_resync()
            raise
        listed = [listed_channel(item) for item in response.items if item.name == "CoreShowChannel"]
        result = tracker.sweep(listed, time.monotonic(), grace_s)
        if result.hangups:
            timestamp = utc_timestamp(time.time()) if self.extended else ""
            for crm_event in result.hangups:
                self._append(crm_event, timestamp)
            log.warning(
                "%d channels hung up while salara was not looking; Hangup events synthesized for %s",
                len(result.hangups),
                ", ".join(event.payload["chan"] for event in result.hangups[:10])
                + (" ..." if len(result.hangups) > 10 else ""),
            )
        self.flush()
        for linkedid in result.ended:
            log.info("tracked call %s has no channel left in Asterisk; tracking ended", linkedid)
        return result.ended


def listed_channel(item: Event) -> ListedChannel:
    """A ``CoreShowChannel`` list item as the tracker takes it."""
    raw = item.get("ChannelState") or ""
    return ListedChannel(
        item.get("Uniqueid") or "",
        item.get("Linkedid") or "",
        item.get("Channel") or "",
        int(raw) if raw.isdigit() else UNKNOWN_STATE,
        item.get("CallerIDNum") or "",
        item.get("Exten") or "",
    )
