"""The live event stream: salara's call events fanned out to ``GET /v1/events`` subscribers.

:meth:`EventHub.publish` is an :class:`~salara.events.pipeline.EventPipeline` live
listener: it gets every CRM event the pipeline emits (the same events, and
the same ids, as the webhooks) in the AMI reader task, formats it once as a
Server-Sent Event and offers it to each subscriber's bounded queue without
ever waiting. A subscriber whose queue is full is dropped (its stream ends
with an ``event: dropped`` message), so a slow client never slows AMI
reading and never holds memory beyond its queue. The number of subscribers
is bounded too, in all and per client (``owner``: a token's name), so one
client cannot take every stream. A stream whose client stops reading is
closed by the HTTP side once one write has waited ``send_timeout_s``
seconds (:class:`salara.api.v1.stream.EventStreamResponse`). The last
``replay_size`` events are kept so a client that reconnects with
``Last-Event-ID`` gets what it missed, while still in there.

An SSE message's ``data`` is the extended webhook body of the event
(:func:`salara.events.payload.extended_body`: same id, Asterisk's timestamp,
``tracked``, ``synthesized``), on one line::

    id: 5f0c...e1
    event: Hangup
    data: {"event":"Hangup","chan":"PJSIP/8001-00000004","caller":"8001","exten":"9002","state":"UP",...}

A lifecycle event's is its one body (:func:`salara.events.payload.lifecycle_body`),
its ``event`` field the type (``call.ended``...).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from salara.calls.events import CrmEvent
from salara.calls.lifecycle import LifecycleEvent
from salara.eventtypes import EVENT_TYPES as EVENT_TYPES  # the stream's filter names them

log = logging.getLogger(__name__)


QUEUE_SIZE: Final = 1_000
MAX_SUBSCRIBERS: Final = 32
MAX_SUBSCRIBERS_PER_OWNER: Final = 8
SEND_TIMEOUT_S: Final = 30.0
"""Longest wait for one write of a stream before it is closed as stalled (the client stopped reading)."""
REPLAY_SIZE: Final = 1_000
HEARTBEAT_S: Final = 15.0
RETRY_MS: Final = 2_000
"""Reconnection delay suggested to clients (the SSE ``retry`` field), milliseconds."""


DROPPED_MESSAGE: Final = (
    b'event: dropped\ndata: {"error":"subscriber_too_slow","message":"events came faster than they were read"}\n\n'
)
"""The last message of a stream that fell behind (no ``id``: the client keeps its last one)."""


class TooManySubscribers(Exception):
    """The hub already serves :attr:`EventHub.max_subscribers` streams, or this owner its share of them."""


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One formatted event: its id, type, call and SSE bytes."""

    id: str
    name: str
    linkedid: str
    message: bytes


def sse_message(event_id: str, name: str, data: bytes) -> bytes:
    """One Server-Sent Event: ``id``, ``event`` and ``data`` (one line of JSON, no CR or LF in it)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), name.encode(), data)


@dataclass(eq=False, slots=True)
class Subscription:
    """One stream's filter and bounded queue; ``None`` in the queue ends the stream."""

    types: frozenset[str] | None
    call: str | None
    queue: asyncio.Queue[LiveEvent | None]
    owner: str = ""
    """Who opened it (a token's name)."""
    visible: Callable[[str], bool] | None = None
    """Whether the subscriber may see the call of a Linkedid (None: every call)."""
    dropped: bool = False
    sent: int = 0
    created_at: float = field(default_factory=time.monotonic)

    def wants(self, event: LiveEvent) -> bool:
        if self.types is not None and event.name not in self.types:
            return False
        if self.call is not None and event.linkedid != self.call:
            return False
        return self.visible is None or self.visible(event.linkedid)


class EventHub:
    """Fans call events out to live subscribers; never blocks the publisher."""

    def __init__(
        self,
        *,
        queue_size: int = QUEUE_SIZE,
        max_subscribers: int = MAX_SUBSCRIBERS,
        max_subscribers_per_owner: int = MAX_SUBSCRIBERS_PER_OWNER,
        replay_size: int = REPLAY_SIZE,
        heartbeat_s: float = HEARTBEAT_S,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self.max_subscribers_per_owner = max_subscribers_per_owner
        self.heartbeat_s = heartbeat_s
        self.send_timeout_s = send_timeout_s
        self.subscribers: set[Subscription] = set()
        self.recent: deque[LiveEvent] = deque(maxlen=replay_size)
        self.published = 0
        self.dropped_subscribers = 0
        """Streams ended because their client fell behind or stopped reading."""

    def publish(self, crm_event: CrmEvent | LifecycleEvent, event_id: str, data: bytes) -> None:
        """The pipeline's live listener: ``data`` is the event's extended JSON body; offer it, never wait."""
        self.published += 1
        event = LiveEvent(event_id, crm_event.name, crm_event.linkedid, sse_message(event_id, crm_event.name, data))
        self.recent.append(event)
        for subscription in tuple(self.subscribers):
            if subscription.wants(event):
                self._offer(subscription, event)

    def _offer(self, subscription: Subscription, event: LiveEvent) -> None:
        try:
            subscription.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop(subscription)

    def _drop(self, subscription: Subscription) -> None:
        """A subscriber too slow to keep up: empty its queue and end its stream."""
        subscription.dropped = True
        self.subscribers.discard(subscription)
        self.dropped_subscribers += 1
        queue = subscription.queue
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)
        log.warning("live event subscriber dropped: %d events queued and not read", self.queue_size)

    def subscribe(
        self,
        types: Iterable[str] | None = None,
        call: str | None = None,
        last_event_id: str | None = None,
        *,
        owner: str = "",
        visible: Callable[[str], bool] | None = None,
    ) -> Subscription:
        """A new subscription of ``owner`` to events of ``types`` (None: all) of call ``call`` (None: all).

        With ``last_event_id`` still among the recent events, the events after
        it are queued first. Raises :class:`TooManySubscribers` beyond
        :attr:`max_subscribers` streams in all, or :attr:`max_subscribers_per_owner`
        of one owner.
        """
        if len(self.subscribers) >= self.max_subscribers:
            raise TooManySubscribers(f"{self.max_subscribers} live event streams are open already")
        if sum(1 for s in self.subscribers if s.owner == owner) >= self.max_subscribers_per_owner:
            raise TooManySubscribers(
                f"this client has {self.max_subscribers_per_owner} live event streams open already"
            )
        subscription = Subscription(
            frozenset(types) if types is not None else None, call, asyncio.Queue(self.queue_size), owner, visible
        )
        if last_event_id:
            replay = False
            for event in tuple(self.recent):
                if replay and subscription.wants(event):
                    self._offer(subscription, event)
                replay = replay or event.id == last_event_id
            if subscription.dropped:
                return subscription
        self.subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)

    def stalled(self, subscription: Subscription) -> None:
        """The HTTP side closed a stream whose client stopped reading (a write waited :attr:`send_timeout_s`)."""
        if subscription in self.subscribers:
            self.subscribers.discard(subscription)
            self.dropped_subscribers += 1
        log.warning("live event subscriber closed: its client read nothing for %g s", self.send_timeout_s)

    async def stream(self, subscription: Subscription) -> AsyncIterator[bytes]:
        """The SSE byte stream of a subscription: a ``retry`` hint, events, heartbeat comments.

        Ends with ``event: dropped`` when the subscriber fell behind; cancelled
        when the client goes away. Always unsubscribes.
        """
        try:
            yield f"retry: {RETRY_MS}\n: salara live events\n\n".encode()
            queue = subscription.queue
            while True:
                try:
                    async with asyncio.timeout(self.heartbeat_s):
                        event = await queue.get()
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if event is None:
                    yield DROPPED_MESSAGE
                    return
                subscription.sent += 1
                yield event.message
        finally:
            self.unsubscribe(subscription)
