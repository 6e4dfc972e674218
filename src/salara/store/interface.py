"""What a durable store of salara does: the :class:`Store` protocol.

Every event salara posts goes in the store first (:meth:`Store.add`, one
committed transaction per batch) before anything else happens to it; the
delivery worker (:mod:`salara.crm.delivery`) claims due events, posts them
and records each outcome there. Nothing is lost when the CRM is slow or
down, or when salara is killed. The SQLite driver
(:class:`salara.store.sqlite.Outbox`, one machine) and the PostgreSQL one
(:class:`salara.store.postgres.PostgresStore`, nodes sharing a database)
implement the same methods with the same meaning; :func:`salara.store.opening.open_store`
opens the one the config names.

Each event is a row with a unique id (32 hex digits; the CRM drops
duplicates by it, as delivery is at-least-once), a sequence number (the
event log's order), its type, the call key it belongs to and its JSON body
(and its compat body, for endpoints of the compat payload). A call key is
free text, compared whole: today the call's Linkedid; it may carry a PBX
name (``NAME:Linkedid``). Events are kept for the event log even when no
endpoint gets them.

Each endpoint an event goes to (``default``: ``[url] dest_url_event``; the
``[webhook NAME]`` sections) has a *delivery* of it, whose ``status`` is one
of:

- ``blocked``: an earlier delivery of the same call to that endpoint is not
  done yet;
- ``ready``: the oldest open delivery of its call there, claimable once
  ``next_attempt_at`` has passed (in retry: ``attempts > 0`` and a future
  ``next_attempt_at``);
- ``sending``: claimed by the endpoint's worker, a POST in flight; back to
  ``ready`` when the store is opened again after a crash (at-least-once);
  on PostgreSQL the claim is a node's lease, which another node takes over
  once it lapses (:mod:`salara.store.postgres`);
- ``delivered``: the endpoint took it;
- ``dead``: its retry schedule ended (:mod:`salara.crm.schedule`); kept,
  counted and listed until the event is pruned, and sent again by a retry or
  a replay.

Per-call order, per endpoint: of each call key at most one delivery to an
endpoint is ``ready`` or ``sending``, always its oldest open one; when it
becomes delivered or dead, the next ``blocked`` one of that call becomes
ready. So a later event never overtakes an earlier one of its call, and a
retry holds back its own call at its own endpoint and nothing else.

Bounds: a store keeps at most a fixed number of events. When an add goes
over, events whose deliveries are all done are deleted first, then the oldest undelivered ones,
which are counted in :attr:`Store.dropped` and logged (never silently). The
attempt log keeps one row per delivery attempt (time, outcome, HTTP status,
error), bounded the same way and pruned by age too.

Call tracking lives in the same store: the calls salara tracks and the live
channels a Hangup may have to be synthesized for after a restart
(:mod:`salara.calls`). They are written by :meth:`Store.add` in the same
transaction as the events of the same AMI read, and read back once at start
(:meth:`Store.load_tracking`).

Idempotency keys (:meth:`Store.remember_key`, :meth:`Store.recall_key`): the
result of a request made with a client's key, so that the same request sent
again gets the same answer instead of being done twice. A scope (the client)
and a key, both free text, name one; its fingerprint tells the same request
from another one reusing the key. They expire after a window the caller
gives, and a store keeps a bounded number of them.

Times are Unix seconds (``time.time()``): they must survive a restart. The
calls are synchronous and short; they are meant for the event-loop thread
only. A store that cannot read or write raises :data:`StoreError`, and a
failed call changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Final, Protocol, Self

from salara.calls.tracking import TrackingChanges
from salara.store.records import (
    DEFAULT_ENDPOINT,
    OPEN_STATUSES,
    Attempt,
    Claimed,
    Counts,
    EventInfo,
    LoggedEvent,
    NewEvent,
    Result,
    Status,
)


class StoreFailure(Exception):
    """A store other than SQLite could not read or write (the call changed nothing); the driver's error is its cause.

    The PostgreSQL driver (:mod:`salara.store.postgres`) raises it for
    every database error, so that its callers need not know the driver.
    """


StoreError: Final = (sqlite3.Error, StoreFailure)
"""What a store raises when it cannot read or write (the call changed nothing): catch it with ``except StoreError``.

The SQLite driver raises :class:`sqlite3.Error` itself; the others
:class:`StoreFailure`.
"""


class Store(Protocol):
    """The durable store of events, attempts, call tracking and idempotency keys (module doc)."""

    @property
    def dropped(self) -> int:
        """Undelivered events dropped because the store was full, since opening."""
        ...

    recovered_from: str | None
    """Where the store's damaged file was moved when the service opened it (a fresh one started), else None."""

    @property
    def name(self) -> str:
        """What the store is, for log messages (the SQLite file's path); never a credential."""
        ...

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close the store (idempotent). Logs drops not yet logged."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    # -- the producer side -----------------------------------------------------

    def add(
        self,
        items: Sequence[NewEvent | tuple[str, bytes]],
        *,
        ids: Sequence[str] | None = None,
        now: float | None = None,
        tracking: TrackingChanges | None = None,
    ) -> list[str]:
        """Store events in one committed transaction; return their ids.

        An item is a :class:`~salara.store.records.NewEvent`, or ``(call key,
        body)`` for that body to the ``default`` endpoint. ``ids`` gives the
        ids (from :func:`~salara.store.records.new_event_id`), else new ones
        are made. ``tracking`` (``started_at`` in Unix seconds) is written in
        the same transaction. Raises ValueError when ``ids`` does not match
        ``items``, :data:`StoreError` when nothing was stored.
        """
        ...

    def load_tracking(self) -> TrackingChanges:
        """The call tracking stored by the last process (calls and channels; ``started_at`` Unix seconds)."""
        ...

    # -- the delivery side -----------------------------------------------------

    def claim(
        self,
        limit: int,
        now: float | None = None,
        *,
        results: Sequence[Result] = (),
        endpoint: str = DEFAULT_ENDPOINT,
    ) -> list[Claimed]:
        """Mark up to ``limit`` due deliveries to ``endpoint`` as in flight and return them, oldest due first.

        Only the oldest open delivery of each call is ever claimable, with
        the body its endpoint takes (compat or extended). ``results`` are
        stored first, as by :meth:`record`, in the same transaction.
        """
        ...

    def record(self, results: Sequence[Result]) -> None:
        """Store the outcomes of attempts in one transaction, with an attempt-log row each.

        ``delivered`` and ``dead`` end the delivery and let the next one of
        its call go; ``retry`` keeps it at the head of its call until
        ``next_attempt_at``. Results for deliveries no longer in flight only
        go to the attempt log.
        """
        ...

    def release(self, events: Iterable[Claimed]) -> None:
        """Put claimed deliveries back as due, without counting an attempt (the worker stopped)."""
        ...

    def next_due(self, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
        """When the earliest ready delivery to ``endpoint`` is due (Unix seconds), or None."""
        ...

    def prune(self, delivered_before: float, attempts_before: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` events delivered everywhere before ``delivered_before`` (or stored, if none).

        Also deletes attempt-log rows older than ``attempts_before`` and those
        over the store's bound. Returns how many events went.
        """
        ...

    # -- endpoints ---------------------------------------------------------------

    def disable(self, endpoint: str, reason: str, now: float | None = None) -> None:
        """Mark ``endpoint`` disabled (a ``410 Gone``) until :meth:`enable`; kept over restarts."""
        ...

    def enable(self, endpoint: str) -> bool:
        """Enable ``endpoint`` again; False when it was not disabled."""
        ...

    def disabled(self) -> dict[str, tuple[float, str]]:
        """The disabled endpoints: ``{name: (since, Unix s; reason)}``."""
        ...

    # -- operators and metrics -------------------------------------------------

    def counts(self, endpoint: str | None = None) -> Counts:
        """Deliveries by state, to ``endpoint`` or all (for metrics and the command line, not per event)."""
        ...

    def depth(self) -> int:
        """Deliveries not done yet (pending, retrying, in flight)."""
        ...

    def list_events(
        self,
        statuses: Iterable[Status] = (*OPEN_STATUSES, "dead"),
        *,
        limit: int = 100,
        endpoint: str | None = None,
        call_key: str | None = None,
        type_: str | None = None,
        since: float | None = None,
        after: int = 0,
    ) -> list[EventInfo]:
        """Up to ``limit`` deliveries in ``statuses``, event sequence over ``after``, oldest first.

        ``endpoint``, ``call_key``, ``type_`` and ``since`` (stored since,
        Unix s) narrow it (None: any).
        """
        ...

    def event_log(self, after: int = 0, limit: int = 100) -> list[LoggedEvent]:
        """Up to ``limit`` stored events with a sequence number over ``after``, oldest first (``/v1/event-log``)."""
        ...

    def attempts(self, event_id: str, endpoint: str | None = None) -> list[Attempt]:
        """The attempt log of one event (to ``endpoint``, or all), oldest first."""
        ...

    def retry(
        self,
        ids: Iterable[str] | None = None,
        *,
        now: float | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        delivered: bool = False,
    ) -> int:
        """Send dead (and with ``delivered``, delivered) deliveries again; return how many changed.

        Waiting ones become due now. ``ids``, ``endpoint``, ``since`` (Unix s)
        choose them; None: all. Per-call order holds; ids stay the same.
        """
        ...

    # -- idempotency keys --------------------------------------------------------

    def remember_key(self, scope: str, key: str, fingerprint: str, created_at: float, result: bytes) -> None:
        """Keep ``result`` of the request ``fingerprint`` made with ``key`` in ``scope`` (one transaction).

        A key remembered again is replaced. Past the store's bound the oldest
        keys are forgotten.
        """
        ...

    def recall_key(self, scope: str, key: str, now: float, window_s: float) -> tuple[str, bytes] | None:
        """``(fingerprint, result)`` remembered for ``key`` in ``scope`` at most ``window_s`` seconds before ``now``.

        None when there is none, or it is older (expired keys of ``scope``
        are deleted).
        """
        ...
