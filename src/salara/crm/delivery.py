"""Delivery of call events to the CRM: the worker, its retries and how many requests it keeps in flight.

Every event is an HTTP ``POST`` of its JSON body to an endpoint
(``dest_url_event``, the ``default`` one, or a ``[webhook NAME]``), signed
the Standard Webhooks way (:mod:`salara.crm.signing`).

One :class:`DeliveryWorker` per endpoint takes that endpoint's deliveries
from the store (the :class:`~salara.store.sqlite.Outbox`) and classifies
each answer: 2xx delivered; ``410 Gone``: on ``default`` the event is dead
(never sent again unless retried by hand), on a ``[webhook NAME]`` the
endpoint is disabled until an admin enables it; anything else, a timeout or
a connection error: tried again on the retry schedule
(:mod:`salara.crm.schedule`: backoff with jitter, ``Retry-After`` honoured,
dead at its end). It runs on its own task, so a slow or dead CRM never holds
up whoever adds events, with as many requests in flight as
:class:`~salara.concurrency.AdaptiveLimit` allows (at most ``concurrency``):
more while the CRM keeps up and events wait, fewer when it times out,
refuses connections or answers 5xx or 429. One request per call at most: the
store hands out only the oldest open event of each call.

What an answer means is :func:`salara.crm.answers.judge`'s (an old CRM's
bare JSON answer without a status line takes the event); the requests go
over :class:`~salara.crm.http1.Http1Client`, kept alive.

A refusing answer's text is stored in the attempt log as received and logged
through :func:`~salara.logsafe.escape` (a CRM's CR/LF or escape sequences
cannot forge a log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from salara.backoff import jittered_backoff_s
from salara.concurrency import AdaptiveLimit
from salara.config import HostPort, mask_url
from salara.crm.answers import Verdict, judge
from salara.crm.http1 import Http1Client
from salara.crm.inflight import InFlight
from salara.crm.outcomes import DeliveryStats, Outcomes
from salara.crm.schedule import RETRY_AFTER_STATUSES, Schedule, retry_after_s
from salara.crm.signing import secret_keys, webhook_headers
from salara.store.interface import Store, StoreError
from salara.store.records import DEFAULT_ENDPOINT, Claimed, Result

log = logging.getLogger(__name__)

IDLE_CONNECTION_S: Final = 4.0
"""A connection to the CRM idle this long is closed: before the servers' own keep-alive ends (Apache, uvicorn: 5 s),
so a post seldom meets a connection the server is closing."""
CLAIM_WINDOW: Final = 4
"""Events a worker keeps claimed per sender: one being posted, the rest waiting for a free sender."""


class DeliveryWorker:
    """Posts the outbox's due deliveries of ``endpoint`` to ``url``. Run :meth:`run` as a task; cancel it to stop.

    ``disable_on_gone``: a ``410 Gone`` disables the endpoint (a
    ``[webhook NAME]``) instead of ending the one event (``default``).

    The worker makes its :class:`~salara.crm.http1.Http1Client` to ``url``
    for each :meth:`run` (and closes it), verifying TLS certificates unless
    ``tls_verify`` is false and, with ``api_listen``, refusing salara's own
    API.
    ``secret`` signs the requests (see the module doc; two secrets separated
    by a space during a rotation). ``timeout_s`` bounds
    each request as a whole (connect, send, read the answer); redirects are
    not followed.

    As many senders post as :attr:`limit` allows (``concurrency`` is its
    ceiling; with ``adaptive`` false, exactly ``concurrency``;
    :class:`~salara.crm.inflight.InFlight`); the worker keeps up to
    ``CLAIM_WINDOW - 1`` times as many claimed events waiting for them, so a sender goes straight
    on to the next event (claimed events are in flight for the outbox: a
    crash makes them due again). The worker looks at the outbox when
    :meth:`notify` says events were added, when a request ends and fewer than
    senders' worth of events are left waiting, when the next retry is due, and
    otherwise every ``idle_poll_s`` (events re-queued by another process);
    each look stores the outcomes so far and claims more in one transaction.
    When the CRM cannot be reached at all (connection refused, timeout), it
    sends one event at a time after a backoff pause and goes back to full
    concurrency at the first answer, rather than pile up failed attempts.
    A ``Retry-After`` on a 429 or 503 holds every request to the endpoint
    until then; what each answer makes of its delivery is
    :class:`~salara.crm.outcomes.Outcomes`.
    """

    def __init__(
        self,
        outbox: Store,
        url: str,
        *,
        tls_verify: bool = True,
        api_listen: HostPort | None = None,
        secret: str = "",
        concurrency: int = 256,
        adaptive: bool = True,
        timeout_s: float = 3.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 300.0,
        retry_for_s: float = 3 * 86400.0,
        idle_poll_s: float = 5.0,
        endpoint: str = DEFAULT_ENDPOINT,
        disable_on_gone: bool = False,
    ) -> None:
        if not url:
            raise ValueError("no URL to deliver events to")
        if concurrency <= 0 or timeout_s <= 0:
            raise ValueError("concurrency and timeout must be positive")
        self.schedule = Schedule(retry_min_s, retry_max_s, retry_for_s)
        self.outbox = outbox
        self.endpoint = endpoint
        self.disable_on_gone = disable_on_gone
        self.disabled = False
        """The endpoint answered ``410 Gone`` (with ``disable_on_gone``): nothing is sent until :meth:`enable`."""
        self.url = url
        self.shown_url = mask_url(url)
        """The URL as logged: credentials masked."""
        self.concurrency = concurrency
        self.inflight = InFlight(concurrency, adaptive)
        self.timeout_s = timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.idle_poll_s = idle_poll_s
        self.outcomes = Outcomes(endpoint, self.shown_url, self.schedule, disable_on_gone=disable_on_gone)
        self.on_attempt: Callable[[Result, float], None] | None = None
        """Told each attempt's result and duration in seconds (:mod:`salara.metrics`' histogram)."""
        self._tls_verify = tls_verify
        self._api_listen = api_listen
        self._keys = secret_keys(secret)
        self._wake = asyncio.Event()
        self._claimed: dict[int, Claimed] = {}
        """Every event claimed and not yet recorded: queued, being posted, or with a result."""
        self._queue: asyncio.Queue[Claimed] = asyncio.Queue()
        self._results: list[Result] = []
        self._senders: set[asyncio.Task[None]] = set()
        self._client: Http1Client | None = None
        self._unreachable = 0
        """Consecutive attempts that got no answer at all."""
        self._paused_until = 0.0
        self._held_until = 0.0
        """A ``Retry-After`` asked for no request before this (Unix s)."""

    @property
    def stats(self) -> DeliveryStats:
        """Counters of this worker's attempts by outcome."""
        return self.outcomes.stats

    @stats.setter
    def stats(self, stats: DeliveryStats) -> None:
        self.outcomes.stats = stats

    @property
    def in_flight(self) -> int:
        """Requests under way now."""
        return len(self.inflight)

    @property
    def limit(self) -> AdaptiveLimit | None:
        """How many requests may be in flight now; None: always ``concurrency``."""
        return self.inflight.limit

    @property
    def allowed(self) -> int:
        """Requests allowed in flight now (:attr:`InFlight.allowed`)."""
        return self.inflight.allowed

    def notify(self) -> None:
        """Tell the worker that events were added (cheap; call after each :meth:`Outbox.add`)."""
        self._wake.set()

    def enable(self) -> None:
        """Send again after a ``410 Gone`` disabled the endpoint (the store's mark is the caller's)."""
        self.disabled = False
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled. Events claimed but not posted go back to due."""
        try:
            self.disabled = self.disable_on_gone and self.endpoint in self.outbox.disabled()
        except StoreError:
            log.exception("outbox %s: cannot read whether webhook %s is disabled", self.outbox.name, self.endpoint)
        client = Http1Client(
            self.url,
            max_connections=self.concurrency,
            tls_verify=self._tls_verify,
            api_listen=self._api_listen,
            idle_timeout_s=IDLE_CONNECTION_S,
        )
        self._client = client
        self._add_senders()
        try:
            await self._loop()
        finally:
            senders, self._senders = self._senders, set()
            for task in senders:
                task.cancel()
            # asyncio.wait does not raise the senders' CancelledError, so a
            # cancellation of run() itself still propagates.
            if senders:
                await asyncio.wait(senders)
            self._client = None
            self._stop()
            await client.aclose()

    def _add_senders(self) -> None:
        """Start senders up to :attr:`allowed` (one over the limit leaves after its request)."""
        client = self._client
        while client is not None and len(self._senders) < self.allowed:
            task = asyncio.create_task(self._sender(client), name=f"webhook-sender-{len(self._senders)}")
            self._senders.add(task)

    def _stop(self) -> None:
        try:
            self.outbox.record(self._results)
            done = {result.event.seq for result in self._results}
            self.outbox.release(event for seq, event in self._claimed.items() if seq not in done)
        except StoreError:
            # They stay in flight in the file: due again when it is next opened.
            log.exception("outbox %s: cannot put back the events in flight", self.outbox.name)
        self._results.clear()
        self._claimed.clear()
        self._queue = asyncio.Queue()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            sleep_s = self._look(time.time())
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sleep_s):
                        await self._wake.wait()

    def _look(self, now: float) -> float:
        """Store the outcomes so far, hand due events to the senders; return how long to sleep."""
        results = self._results
        room = self._room(now, len(self._claimed) - len(results))
        try:
            claimed = self.outbox.claim(room, now, results=results, endpoint=self.endpoint)
        except StoreError:
            # A locked or full disk must not end deliveries for good; the
            # outcomes are kept for the next look.
            log.exception("outbox %s: cannot store outcomes or claim events", self.outbox.name)
            return self.idle_poll_s
        self._results = []
        for result in results:
            self._claimed.pop(result.event.seq, None)
        for event in claimed:
            self._claimed[event.seq] = event
            self._queue.put_nowait(event)
        try:
            return self._sleep_s(now, room - len(claimed))
        except StoreError:
            log.exception("outbox %s: cannot read the next due time", self.outbox.name)
            return self.idle_poll_s

    def _room(self, now: float, claimed: int) -> int:
        """How many more events to claim now, with ``claimed`` still queued or being posted."""
        if self.disabled or now < self._held_until:
            return 0
        if self._unreachable:
            # CRM unreachable: one probe at a time, after the pause.
            return 1 - claimed if now >= self._paused_until else 0
        return CLAIM_WINDOW * self.allowed - claimed

    def _sleep_s(self, now: float, room_left: int) -> float:
        """How long to wait for a wake-up (a notify or a finished request) before looking again."""
        check_s = self.inflight.check_every_s()
        if check_s is None:
            return self._sleep_s_by_store(now, room_left)
        if self.inflight.flag_stalls(time.monotonic()):
            self._add_senders()  # the stuck ones no longer hold the others back
        return min(self._sleep_s_by_store(now, room_left), check_s)

    def _sleep_s_by_store(self, now: float, room_left: int) -> float:
        if self.disabled:
            return self.idle_poll_s
        if now < self._held_until:
            return min(self._held_until - now, self.idle_poll_s)
        if self._unreachable and now < self._paused_until:
            return min(self._paused_until - now, self.idle_poll_s)
        if room_left <= 0:
            return self.idle_poll_s  # enough claimed: a finished request wakes us
        due = self.outbox.next_due(self.endpoint)
        if due is None:
            return self.idle_poll_s
        return min(max(due - now, 0.0), self.idle_poll_s)

    async def _sender(self, client: Http1Client) -> None:
        me = asyncio.current_task()
        while len(self._senders) <= self.allowed:
            event = await self._queue.get()
            result = await self._attempt(client, event)
            self._results.append(result)
            self._add_senders()  # the limit may have grown
            # Look again only when the senders may soon run dry: each look
            # is one commit, so the outcomes of busy times go in batches.
            if self._queue.qsize() < self.allowed:
                self._wake.set()
        if me is not None:
            self._senders.discard(me)  # the limit shrank: one sender fewer

    async def _attempt(self, client: Http1Client, event: Claimed) -> Result:
        at, started = time.time(), time.monotonic()
        inflight = self.inflight
        inflight.begin(event.seq, started)
        self.outcomes.stats.peak_in_flight = inflight.peak
        verdict: Verdict | None = None
        error = ""
        try:
            headers = webhook_headers(self._keys, event.id, int(at), event.body)
            headers.pop("content-type", None)  # the client sends it
            verdict = judge(await client.post(event.body, list(headers.items()), self.timeout_s))
        except TimeoutError:
            error = f"no answer within {self.timeout_s:g} s"
        except OSError as exc:  # refused, reset, closed before an answer, malformed, TLS
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug must not leave the event in flight for good
            log.exception("webhook %s: unexpected failure", event.id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            inflight.end(event.seq)  # also when cancelled
        latency_s = time.monotonic() - started
        result = self.outcomes.result(event, at, verdict, error, latency_s)
        self._after(result, verdict)
        status = verdict.status if verdict is not None else None
        overloaded = verdict is None or (status is not None and (status >= 500 or status == 429))
        if inflight.outcome(event.seq, overloaded, latency_s, not self._queue.empty(), time.monotonic()):
            self._add_senders()
        if self.on_attempt is not None:
            self.on_attempt(result, latency_s)
        return result

    def _after(self, result: Result, verdict: Verdict | None) -> None:
        """What one attempt's answer means for the endpoint: a pause, a hold, or being disabled."""
        at = result.at
        if verdict is None:
            self._unreachable += 1
            delay_s = jittered_backoff_s(self._unreachable - 1, self.retry_min_s, self.retry_max_s)
            self._paused_until = time.time() + delay_s
            return
        self._unreachable = 0
        if verdict.status in RETRY_AFTER_STATUSES:
            wait_s = retry_after_s(verdict.retry_after, at)
            if wait_s is not None:
                self._held_until = max(self._held_until, at + wait_s)  # the whole endpoint asked for a pause
        if verdict.status == 410 and self.disable_on_gone and not self.disabled:
            self.disabled = True
            try:
                self.outbox.disable(self.endpoint, result.error, at)
            except StoreError:
                log.exception("outbox %s: cannot store that webhook %s is disabled", self.outbox.name, self.endpoint)
