"""The records a store hands out and takes: events claimed, outcomes, listings, counts.

They are plain frozen dataclasses (:class:`NewEvent` a named tuple), the
same whatever database keeps the events (:mod:`salara.store.interface`). Times are Unix seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

Status = Literal["blocked", "ready", "sending", "delivered", "dead"]
Outcome = Literal["delivered", "retry", "dead"]

OPEN_STATUSES: Final[tuple[Status, ...]] = ("blocked", "ready", "sending")
"""Statuses of deliveries not yet done: the outbox depth."""
DEFAULT_ENDPOINT: Final = "default"
"""The endpoint of ``[url] dest_url_event``; ``[webhook NAME]`` sections may not take this name."""


_VERSION_7: Final = 0x7 << 76
_VARIANT: Final = 0b10 << 62
_RAND_B: Final = (1 << 62) - 1
_MS: Final = (1 << 48) - 1


_POOL_SIZE: Final = 256
_pool: list[int] = []
"""80-bit random numbers for the next ids: one ``getrandom`` call per block, not per id (6 % of ingest)."""


def _draw() -> int:
    block = os.urandom(10 * _POOL_SIZE)
    _pool.extend(int.from_bytes(block[start : start + 10]) for start in range(10, len(block), 10))
    return int.from_bytes(block[:10])


# A child must not make the ids its parent makes from the same inherited block.
os.register_at_fork(after_in_child=_pool.clear)


def new_event_id(now: float) -> str:
    """A fresh event id made at ``now`` (Unix s): 32 lowercase hex digits, a UUID of version 7 (RFC 9562 §5.7).

    Its first 48 bits are ``now`` in milliseconds, the other 74 (after
    the version and variant bits) random. Ids made one after another sort
    together, so each store's transaction touches the last pages of the id
    index instead of a random page per event (a quarter of the SQLite
    outbox's time with random UUIDs). :meth:`Outbox.add` makes them itself;
    call this first when the body must carry its own id (the extended payload).
    """
    rand = _pool.pop() if _pool else _draw()
    rand_a = (rand >> 62) & 0xFFF
    value = (int(now * 1000) & _MS) << 80 | _VERSION_7 | rand_a << 64 | _VARIANT | rand & _RAND_B
    return f"{value:032x}"


class NewEvent(NamedTuple):
    """An event to store: its call key, ``body`` (the extended or lifecycle JSON), type, compat form.

    ``endpoints`` name the endpoints that get ``body``; ``compat_endpoints``
    those that get ``compat``, the SPEC §2 body (None: the event has none, or
    no endpoint wants it). No endpoint at all: it is kept for the event log.
    A named tuple, not a frozen dataclass: one is made for every event
    stored, and a tuple is made in a quarter of the time.
    """

    call_key: str
    body: bytes
    type: str = ""
    compat: bytes | None = None
    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    compat_endpoints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery handed to a worker: event row ``seq``, id, call key, body, past attempts, endpoint.

    ``created_at`` (Unix seconds) is when the event was stored: its retry
    schedule runs from there.
    """

    seq: int
    id: str
    call_key: str
    body: bytes
    attempts: int
    endpoint: str = DEFAULT_ENDPOINT
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one delivery attempt of ``event``, for :meth:`Outbox.record`.

    ``at`` is when the attempt was made; ``http_status`` the CRM's answer
    (None when there was none); ``error`` why it failed ("" on success);
    ``next_attempt_at`` when to try again (``retry`` only); ``latency_ms``
    how long the attempt took; ``answer`` the first bytes of the answer's
    body as text, as received (escape it to show it).
    """

    event: Claimed
    outcome: Outcome
    at: float
    http_status: int | None = None
    error: str = ""
    next_attempt_at: float = 0.0
    latency_ms: float | None = None
    answer: str | None = None


AttemptRow = tuple[str, str, float, str, int | None, str | None, float | None, str | None]
"""An attempt-log row as both drivers write it: endpoint, event id, at, outcome, status, error, ms, answer."""


def attempt_row(result: Result) -> AttemptRow:
    """The attempt-log row of ``result`` (an empty error stored as none)."""
    event = result.event
    return (
        event.endpoint,
        event.id,
        result.at,
        result.outcome,
        result.http_status,
        result.error or None,
        result.latency_ms,
        result.answer,
    )


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One delivery of an event to ``endpoint``, as ``salara events list`` and the API show it (Unix seconds)."""

    id: str
    call_key: str
    status: Status
    attempts: int
    created_at: float
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    body: bytes
    seq: int = 0
    type: str = ""
    endpoint: str = DEFAULT_ENDPOINT
    done_at: float | None = None


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One stored event of the event log: its sequence number, id, type, call key, time (Unix s), body."""

    seq: int
    id: str
    type: str
    call_key: str
    created_at: float
    body: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row of the attempt log; ``latency_ms`` and ``answer`` (first bytes of the body) when known."""

    event_id: str
    at: float
    outcome: Outcome
    http_status: int | None
    error: str | None
    endpoint: str = DEFAULT_ENDPOINT
    latency_ms: float | None = None
    answer: str | None = None


@dataclass(frozen=True, slots=True)
class Counts:
    """Deliveries by state: never tried yet, waiting for a retry, in flight, dead, delivered."""

    pending: int = 0
    retrying: int = 0
    sending: int = 0
    dead: int = 0
    delivered: int = 0
    """Delivered and not yet pruned."""

    @property
    def depth(self) -> int:
        """Events not done yet: pending, retrying and in flight."""
        return self.pending + self.retrying + self.sending
