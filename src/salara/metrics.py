"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

Everything is read from the parts' own counters at scrape time (a collector),
except two histograms fed as things happen: AMI action latency (through
:meth:`AMIClient.add_action_listener <salara.ami.client.AMIClient.add_action_listener>`)
and API request duration (:class:`MetricsMiddleware`). Nothing here runs in
the AMI protocol core; the per-event cost is one dict increment.

Metrics (all prefixed ``salara_``):

- ``ami_up`` (1 logged in and booted), ``ami_logins_total``,
  ``ami_disconnects_total`` (each one is followed by a reconnect attempt),
  ``ami_actions_total``;
- ``ami_action_seconds{action}`` histogram, ``ami_action_failures_total{action,outcome}``
  (outcome ``error``, ``timeout`` or ``lost``);
- ``ami_events_total{event}`` AMI events received by type;
- ``api_requests_total{method,route,status}`` and ``api_request_seconds{method,route}``,
  ``route`` being the route's template (``/v1/calls/{call_id}``; the compat
  endpoint is ``/{path:path}``; no route ``unmatched``), so cardinality stays
  bounded whatever paths clients send;
- ``calls_active``, ``channels_active``, ``calls_originated_total``,
  ``calls_ended_total{outcome}``, ``idempotent_replays_total``;
- ``events_emitted_total`` (call events for the CRM), ``events_lost_total``;
  ``live_subscribers``, ``live_events_total``, ``live_subscribers_dropped_total``;
- ``outbox_depth``, ``outbox_events{status}``, ``outbox_dropped_total``,
  ``outbox_recovered_total`` (1 when the outbox file was found damaged at
  start and set aside),
  ``webhook_deliveries_total{outcome}`` (delivered, retried, gone);
- ``routing_decisions_total{source}``;
- ``tracked_calls``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salara.ami.messages import Event
from salara.store.interface import StoreError

if TYPE_CHECKING:
    from salara.ami.client import AMIClient
    from salara.calls.tracking import CallTracker
    from salara.control import CallControl
    from salara.crm.delivery import DeliveryWorker
    from salara.events.hub import EventHub
    from salara.events.pipeline import EventPipeline
    from salara.routing.script import Router
    from salara.store.sqlite import Outbox

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
ACTION_BUCKETS_S: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STREAMING_ROUTES: Final = frozenset({"/v1/events"})
"""Routes whose requests last as long as the client stays: counted, not timed."""


@dataclass
class Sources:
    """The parts whose counters the collector reads; any may be missing."""

    ami: AMIClient | None = None
    control: CallControl | None = None
    hub: EventHub | None = None
    pipeline: EventPipeline | None = None
    outbox: Outbox | None = None
    delivery: DeliveryWorker | None = None
    router: Router | None = None
    tracker: CallTracker | None = None


class Metrics:
    """salara's metrics in their own registry (one per app, so tests can build several)."""

    def __init__(self, sources: Sources | None = None) -> None:
        # No *_created series: they double the output and nobody graphs them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.sources = sources if sources is not None else Sources()
        self.registry = CollectorRegistry(auto_describe=True)
        self.events: Counter[str] = Counter()
        """AMI events received, by type (filled by :meth:`count_event`)."""
        self.action_seconds = Histogram(
            "salara_ami_action_seconds",
            "Time from sending an AMI action to its answer, seconds",
            ["action"],
            buckets=ACTION_BUCKETS_S,
            registry=self.registry,
        )
        self.action_failures = PromCounter(
            "salara_ami_action_failures",
            "AMI actions Asterisk refused (error), did not answer in time (timeout) or lost with the link",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.api_requests = PromCounter(
            "salara_api_requests",
            "HTTP API requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.api_seconds = Histogram(
            "salara_api_request_seconds",
            "HTTP API request duration by method and route template, seconds (streams excluded)",
            ["method", "route"],
            buckets=REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_Collector(self))

    def count_event(self, event: Event) -> None:
        self.events[event.name] += 1

    def observe_action(self, name: str, seconds: float, outcome: str) -> None:
        self.action_seconds.labels(name).observe(seconds)
        if outcome != "success":
            self.action_failures.labels(name, outcome).inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"
        self.api_requests.labels(method, route, str(status)).inc()
        if route not in STREAMING_ROUTES:
            self.api_seconds.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _Collector(Collector):
    """Reads the parts' counters at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # unchecked: the names are fixed and documented above

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        sources = metrics.sources
        events = CounterMetricFamily("salara_ami_events", "AMI events received, by type", labels=["event"])
        for name, count in sorted(metrics.events.items()):
            events.add_metric([name], count)
        yield events
        if sources.ami is not None:
            yield from _ami(sources.ami)
        if sources.control is not None:
            yield from _calls(sources.control)
        if sources.pipeline is not None:
            pipeline = sources.pipeline
            yield CounterMetricFamily(
                "salara_events_emitted", "Call events emitted for the CRM and the live stream", pipeline.emitted
            )
            yield CounterMetricFamily("salara_events_lost", "Call events the outbox could not store", pipeline.lost)
        if sources.hub is not None:
            hub = sources.hub
            yield GaugeMetricFamily("salara_live_subscribers", "Open live event streams", len(hub.subscribers))
            yield CounterMetricFamily("salara_live_events", "Call events offered to live streams", hub.published)
            yield CounterMetricFamily(
                "salara_live_subscribers_dropped", "Live streams ended for falling behind", hub.dropped_subscribers
            )
        if sources.outbox is not None:
            yield from _outbox(sources.outbox)
        if sources.delivery is not None:
            stats = sources.delivery.stats
            deliveries = CounterMetricFamily(
                "salara_webhook_deliveries", "Event POST attempts to the CRM, by outcome", labels=["outcome"]
            )
            for outcome, count in (("delivered", stats.delivered), ("retried", stats.retried), ("gone", stats.gone)):
                deliveries.add_metric([outcome], count)
            yield deliveries
        if sources.router is not None:
            decisions = CounterMetricFamily(
                "salara_routing_decisions", "Incoming-call routing decisions, by source", labels=["source"]
            )
            for source, count in sorted(sources.router.decisions.items()):
                decisions.add_metric([str(source)], count)
            yield decisions
        if sources.tracker is not None:
            yield GaugeMetricFamily("salara_tracked_calls", "Calls tracked for events", len(sources.tracker.calls))


def _ami(ami: AMIClient) -> Iterator[Metric]:
    stats = ami.stats
    yield GaugeMetricFamily("salara_ami_up", "1 while AMI is logged in and Asterisk fully booted", int(ami.ready))
    yield CounterMetricFamily("salara_ami_logins", "AMI logins (the first and every reconnect)", stats.connects)
    yield CounterMetricFamily("salara_ami_disconnects", "AMI sessions lost after login", stats.disconnects)
    yield CounterMetricFamily("salara_ami_actions", "AMI actions sent", stats.actions)


def _calls(control: CallControl) -> Iterator[Metric]:
    registry = control.registry
    yield GaugeMetricFamily("salara_calls_active", "Calls with live channels", len(registry.active()))
    yield GaugeMetricFamily("salara_channels_active", "Live channels", len(registry.channels))
    yield CounterMetricFamily(
        "salara_calls_originated",
        "Calls salara placed (compat make call and POST /v1/calls)",
        registry.originated_count,
    )
    ended = CounterMetricFamily("salara_calls_ended", "Calls ended, by outcome", labels=["outcome"])
    for outcome in ("answered", "busy", "no_answer", "failed", "unknown"):
        ended.add_metric([outcome], max(registry.outcomes.get(outcome, 0), 0))
    yield ended
    yield CounterMetricFamily(
        "salara_idempotent_replays", "POST /v1/calls answered from an earlier request", control.idempotency.replays
    )


def _outbox(outbox: Outbox) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "salara_outbox_recovered",
        "Damaged outbox files set aside at start (a fresh outbox started; see the ERROR log line)",
        int(outbox.recovered_from is not None),
    )
    try:
        counts = outbox.counts()
    except StoreError as exc:
        log.warning("outbox metrics unavailable: %s", exc)
        return
    depth = counts.depth
    yield GaugeMetricFamily("salara_outbox_depth", "Events not delivered yet (pending, retrying, in flight)", depth)
    by_status = GaugeMetricFamily("salara_outbox_events", "Events in the outbox, by status", labels=["status"])
    for status in ("pending", "retrying", "sending", "gone", "delivered"):
        by_status.add_metric([status], getattr(counts, status))
    yield by_status
    yield CounterMetricFamily("salara_outbox_dropped", "Undelivered events dropped at the size bound", outbox.dropped)


class MetricsMiddleware:
    """ASGI middleware counting requests by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(scope.get("method", "GET"), template, status, time.perf_counter() - started)
