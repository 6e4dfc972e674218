"""From AMI events to the store: the call-event pipeline.

The one AMI event listener of the call model: each event is folded by the
:class:`~salara.calls.tracking.CallTracker` (and its registry); the CRM events
it yields get their bodies (:mod:`salara.events.payload`) and are written to
the store in one transaction per AMI read (under load, per batch window of
reads: :data:`BATCH_WINDOW_S`), with the call tracking those reads changed,
before anything else happens to them; then delivery is woken and the
live listeners (``/v1/events``) are told. Synthesized Hangups from a
resynchronisation (:mod:`salara.events.resync`) go the same way.

Times: an event's fold, bodies and lifecycle times are Asterisk's
``Timestamp`` when it sends one (``timestampevents = yes``), else the time
salara read it.

Lifecycle events (with a :class:`~salara.calls.lifecycle.CallLifecycle` on
the tracker's registry) are decided after each event is folded, from the
calls it changed, and after changes made outside the fold (an
``OriginateResponse``, a resynchronisation) when the batch is written. They
go to the live listeners and into the same transaction as the compat events
of the same read (same call key, so ordered with them per call; same ids).

Each stored event names the endpoints that get it, by type and payload
(:class:`~salara.events.subscriptions.Subscriptions`); an event no endpoint
gets is stored all the same, for the event log (``/v1/event-log``). Its
stored body is the extended (or lifecycle) one; the compat body is stored
beside it when an endpoint takes that payload. (Without live listeners and
with only compat endpoints, as in the ingest benchmark, only the compat body
is built, and it is what the log shows.)

Two nodes on one PostgreSQL store (:mod:`salara.nodes`): only the leader's
pipeline stores. A follower's (:meth:`EventPipeline.follow`) folds every
event into the call model, so its API sees every call, but stores, wakes and
tells nothing. When it takes the lead, :meth:`EventPipeline.lead` takes the
tracking the leader stored, as after a restart; the resynchronisation that
follows finds the calls that ended meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from salara.ami.messages import Event
from salara.calls.events import CrmEvent
from salara.calls.lifecycle import CallLifecycle, LifecycleEvent
from salara.calls.tracking import CallTracker, TrackingChanges, folds
from salara.events.payload import compat_body, event_time, extended_body, lifecycle_body
from salara.events.subscriptions import Route, Subscriptions
from salara.store.interface import StoreError
from salara.store.records import NewEvent, new_event_id
from salara.utc import utc_timestamp

log = logging.getLogger(__name__)

BATCH_WINDOW_S: Final = 0.005
"""The service's least time between two store transactions (seconds): at most 200 commits a second."""

LiveListener = Callable[[CrmEvent | LifecycleEvent, str, bytes], None]
"""Told of every event once its batch is stored: ``(event, id, extended JSON body)`` (a lifecycle event's one body)."""


class EventStore(Protocol):
    """Where serialised events go: ``add([NewEvent, ...], ids=[...], tracking=...)``, one transaction.

    ``tracking`` (may be None) is the call tracking changed by the same AMI
    read; a store that keeps nothing over a restart ignores it. Raises
    :data:`~salara.store.interface.StoreError` when nothing could be stored.
    """

    def add(
        self,
        items: Sequence[NewEvent],
        *,
        ids: Sequence[str] | None = None,
        tracking: TrackingChanges | None = None,
    ) -> list[str]: ...


class EventPipeline:
    """AMI events in, store rows out. Register :meth:`on_event` as an AMI listener.

    ``subscriptions`` say which endpoints get which event types; without it,
    one ``default`` endpoint gets the SPEC §2 events (the extended body with
    ``extended``, else the compat one) and, with ``lifecycle_webhook`` and
    ``extended``, the lifecycle events.

    ``batch_window_s`` is the least time (seconds) between two transactions:
    events read sooner after one wait for the next, at most that long. Under
    a stream of small reads one transaction then takes many reads (group
    commit: the store's cost per commit, most of its cost, is paid a few
    hundred times a second at most); an event after a quiet spell is stored
    at once. The price is as much delay before delivery and, on a crash (or
    a lead lost to another node, where the store's fence refuses it), the
    loss of what was read in the window, as of what Asterisk had sent and
    salara not yet read. The window runs on the event loop's clock
    (:func:`time.monotonic`), not on ``monotonic``, which dates the folds.
    0: one transaction per AMI read. The service uses :data:`BATCH_WINDOW_S`.
    """

    def __init__(
        self,
        tracker: CallTracker,
        store: EventStore,
        *,
        extended: bool = False,
        notify: Callable[[], None] = lambda: None,
        live_listeners: Sequence[LiveListener] = (),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        lifecycle: CallLifecycle | None = None,
        lifecycle_webhook: bool = False,
        subscriptions: Subscriptions | None = None,
        batch_window_s: float = 0.0,
    ) -> None:
        self.tracker = tracker
        self.store = store
        self.notify = notify
        self.live_listeners = list(live_listeners)
        self.clock = clock
        self.monotonic = monotonic
        self.subscriptions = subscriptions or Subscriptions.single(extended=extended, lifecycle=lifecycle_webhook)
        self._batch: list[NewEvent] = []
        self._ids: list[str] = []
        self._told: list[tuple[CrmEvent | LifecycleEvent, str, bytes]] = []
        """Events of the pending batch for the live listeners, told once the batch is stored."""
        self.batch_window_s = batch_window_s
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = -math.inf
        """When (:func:`time.monotonic` s) the last transaction began."""
        self.emitted = 0
        self.lost = 0
        """Events the store refused (disk full, unwritable file): counted, logged."""
        tracker.on_change = self._schedule_flush  # tracking changed by the API or routing is stored too
        self.lifecycle = lifecycle
        if lifecycle is not None:
            lifecycle.registry.on_touch = self._schedule_flush  # calls changed by the API decide events too
        self.storing = True
        """False on a node that does not lead: events are folded, never stored nor told (:meth:`follow`)."""

    def restore(self, stored: TrackingChanges) -> None:
        """Load the tracking an earlier run stored, before AMI starts."""
        self.tracker.restore(stored, self.clock(), self.monotonic())
        if self.lifecycle is not None:
            self.lifecycle.adopt()  # what they did was told before the restart; how they end is to come
        if stored.calls or stored.channels:
            log.info(
                "call tracking restored: %d tracked calls, %d live channels; checked against Asterisk at login",
                len(stored.calls),
                len(stored.channels),
            )

    def follow(self) -> None:
        """Stop storing at once (this node no longer leads): what is pending is dropped; the fold goes on.

        :class:`~salara.nodes.Node` flushes first, so that a leader that stops stores its last window.
        """
        self.storing = False
        self._batch, self._ids, self._told = [], [], []

    def lead(self, stored: TrackingChanges) -> None:
        """Store from now on (this node took the lead), from the call tracking ``stored`` by the last leader.

        As after a restart (:meth:`restore`): the stored live channels this
        node saw hang up are live again, unseen, until the resynchronisation
        that must follow finds them gone and ends them (synthesized Hangups,
        a reconciled ``call.ended``: what the last leader did not store).
        """
        self._take_lifecycle()
        self.follow()
        self.tracker.restore(stored, self.clock(), self.monotonic())
        for call in self.tracker.registry.calls.values():
            if call.told.ended and call.ended_at is None:
                call.told.ended = False  # revived by a stored channel: its end is to be told again
        if self.lifecycle is not None:
            self.lifecycle.adopt()
        self.storing = True

    def on_event(self, event: Event) -> None:
        if not folds(event):
            return  # most of a busy stream: left unparsed
        wall = event_time(event, self.clock())
        crm_event = self.tracker.on_event(event, wall, self.monotonic())
        if not self.storing:
            self._take_lifecycle()
            return
        if crm_event is not None:
            route = self.subscriptions.route(crm_event.name)
            wanted = self.live_listeners or route.extended  # only an extended body shows the time
            self._append(crm_event, utc_timestamp(wall) if wanted else "", route)
        self._take_lifecycle()

    def append(self, crm_event: CrmEvent, timestamp: str) -> None:
        """Queue one CRM event (``timestamp`` ISO 8601) for the next :meth:`flush`, which runs soon."""
        if self.storing:
            self._append(crm_event, timestamp, self.subscriptions.route(crm_event.name))

    def _append(self, crm_event: CrmEvent, timestamp: str, route: Route) -> None:
        event_id = new_event_id(self.clock())
        event_type = crm_event.name
        extended = extended_body(crm_event, event_id, timestamp) if route.extended or self.live_listeners else b""
        compat = compat_body(crm_event) if route.compat or not extended else None
        body = extended or compat or b""
        key = crm_event.linkedid or crm_event.uniqueid
        # The compat body stored once: as the body itself when there is no extended one.
        self._batch.append(NewEvent(key, body, event_type, compat if extended else None, route.extended, route.compat))
        self._ids.append(event_id)
        if self.live_listeners:
            self._told.append((crm_event, event_id, extended))
        self._schedule_flush()

    def _take_lifecycle(self) -> None:
        if self.lifecycle is not None:
            for event in self.lifecycle.take():
                if self.storing:
                    self.append_lifecycle(event)

    def append_lifecycle(self, event: LifecycleEvent) -> None:
        """Queue one lifecycle event for the next :meth:`flush`: stored (for its endpoints and the log), told."""
        event_id = new_event_id(self.clock())
        body = lifecycle_body(event, event_id)
        route = self.subscriptions.route(event.name)
        self._batch.append(NewEvent(event.linkedid, body, event.name, None, route.extended))
        self._ids.append(event_id)
        if self.live_listeners:
            self._told.append((event, event_id, body))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        # Everything one AMI read produced goes in one transaction, right after the read
        # or, within the batch window of the last one, when the window ends.
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a test, a tool): the caller flushes
                return
            wait = self._last_flush + self.batch_window_s - time.monotonic()
            self._flush_handle = loop.call_later(wait, self.flush) if wait > 0 else loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the pending batch and tracking changes to the store (one transaction).

        Then wake delivery and tell the live listeners about the batch's events.
        """
        self._take_lifecycle()  # calls changed outside the fold of an event (the API, a resync)
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # called before its time (a resync, the shutdown): done now
            self._flush_handle = None
        tracker = self.tracker
        changes = tracker.take_changes() if tracker.dirty else None
        if not self.storing:
            return  # the leader stores the tracking
        if not changes:
            changes = None  # nothing to store (a channel born and gone within the batch)
        if not self._batch and changes is None:
            return
        batch, ids, told = self._batch, self._ids, self._told
        self._batch, self._ids, self._told = [], [], []
        self._last_flush = time.monotonic()
        try:
            self.store.add(batch, ids=ids, tracking=changes)
        except StoreError as exc:
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
        # The live stream is told after the store (even when it refused: the stream is all they get then).
        for crm_event, event_id, extended in told:
            for listener in self.live_listeners:
                listener(crm_event, event_id, extended)
