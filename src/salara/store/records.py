"""The records a store hands out and takes: events claimed, outcomes, listings, counts.

They are plain frozen dataclasses, the same whatever database keeps the
events (:mod:`salara.store.interface`). Times are Unix seconds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Literal

Status = Literal["blocked", "ready", "sending", "delivered", "gone"]
Outcome = Literal["delivered", "retry", "gone"]

OPEN_STATUSES: Final[tuple[Status, ...]] = ("blocked", "ready", "sending")
"""Statuses of events not yet done: the outbox depth."""


def new_event_id() -> str:
    """A fresh event id: 32 lowercase hex digits (a random UUID).

    :meth:`Outbox.add` makes them itself; call this first when the body must
    carry its own id (the extended payload).
    """
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Claimed:
    """An event handed to the worker: its row ``seq``, id, call key, body and past attempts."""

    seq: int
    id: str
    call_key: str
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one delivery attempt of ``event``, for :meth:`Outbox.record`.

    ``at`` is when the attempt was made; ``http_status`` the CRM's answer
    (None when there was none); ``error`` why it failed ("" on success);
    ``next_attempt_at`` when to try again (``retry`` only).
    """

    event: Claimed
    outcome: Outcome
    at: float
    http_status: int | None = None
    error: str = ""
    next_attempt_at: float = 0.0


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One event as ``salara events list`` shows it. Times are Unix seconds."""

    id: str
    call_key: str
    status: Status
    attempts: int
    created_at: float
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row of the attempt log."""

    event_id: str
    at: float
    outcome: Outcome
    http_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    """Events by state: never tried yet, waiting for a retry, in flight, gone, delivered."""

    pending: int = 0
    retrying: int = 0
    sending: int = 0
    gone: int = 0
    delivered: int = 0
    """Delivered and not yet pruned."""

    @property
    def depth(self) -> int:
        """Events not done yet: pending, retrying and in flight."""
        return self.pending + self.retrying + self.sending
