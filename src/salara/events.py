"""From AMI events to the outbox: the call-event pipeline.

An AMI event listener feeds :class:`~salara.calls.CallTracker`; the CRM events
it yields are serialised (compat or extended payload) and written to the
outbox in one transaction per AMI read, before anything else happens to them;
then the delivery worker is woken. A periodic sweep drops tracked calls whose
Hangup was missed, checked against AMI ``CoreShowChannels``.
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
from salara.calls import CallTracker, CrmEvent
from salara.errors import AMIError
from salara.outbox import new_event_id

log = logging.getLogger(__name__)


class EventStore(Protocol):
    """Where serialised events go: ``add([(linkedid, body), ...], ids=[...])``, one transaction."""

    def add(self, items: Sequence[tuple[str, bytes]], *, ids: Sequence[str] | None = None) -> list[str]: ...


def event_timestamp(event: Event, received_at: float) -> str:
    """ISO 8601 UTC time of an event: Asterisk's ``Timestamp`` header if sent, else receipt time."""
    raw = event.get("Timestamp") if "Timestamp" in event else None
    try:
        seconds = float(raw) if raw else received_at
    except ValueError:
        seconds = received_at
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body_of(crm_event: CrmEvent, event_id: str, extended: bool, timestamp: str) -> bytes:
    """The JSON body POSTed to the CRM: the SPEC §2 object, plus correlation keys if extended."""
    payload: dict[str, str] = crm_event.payload
    if extended:
        payload = {
            **payload,
            "uniqueid": crm_event.uniqueid,
            "linkedid": crm_event.linkedid,
            "timestamp": timestamp,
            "id": event_id,
        }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


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
        self._flush_scheduled = False
        self.emitted = 0
        self._resync = asyncio.Event()
        self.lost = 0
        """Events the outbox refused (disk full, unwritable file): counted, logged."""

    def on_event(self, event: Event) -> None:
        crm_event = self.tracker.on_event(event)
        if crm_event is None:
            return
        event_id = new_event_id()
        timestamp = event_timestamp(event, time.time()) if self.extended else ""
        body = body_of(crm_event, event_id, self.extended, timestamp)
        self._batch.append((crm_event.linkedid or crm_event.uniqueid, body))
        self._ids.append(event_id)
        for listener in self.live_listeners:
            listener(crm_event, event_id, body)
        if not self._flush_scheduled:
            # Everything one AMI read produced goes in one transaction, right after the read.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write the pending batch to the store (one transaction) and wake delivery."""
        self._flush_scheduled = False
        if not self._batch:
            return
        batch, ids = self._batch, self._ids
        self._batch, self._ids = [], []
        try:
            self.store.add(batch, ids=ids)
        except sqlite3.Error as exc:
            self.lost += len(batch)
            log.error("%d call events could NOT be stored in the outbox: %s", len(batch), exc)
            return
        self.emitted += len(batch)
        self.notify()

    def on_ami_state(self, ready: bool) -> None:
        """AMI state listener: after a (re)login, check at once what was missed while away."""
        if ready:
            self._resync.set()

    async def sweep_forever(self, ami: AMIClient, interval_s: float, grace_s: float) -> None:
        """Every ``interval_s`` seconds, and after each AMI login, resynchronise call tracking.

        Drops tracked calls with no live channel left, and channels whose
        Hangup was missed, so the tracker's memory stays bounded.
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
        """One check of the tracked calls against AMI ``CoreShowChannels``."""
        response = await ami.action("CoreShowChannels")
        live = [
            (item.get("Uniqueid") or "", item.get("Linkedid") or "")
            for item in response.items
            if item.name == "CoreShowChannel"
        ]
        dropped = self.tracker.sweep(live, time.monotonic(), grace_s)
        for linkedid in dropped:
            log.info("tracked call %s has no channel left in Asterisk; tracking ended", linkedid)
        return dropped
