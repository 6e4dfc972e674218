"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

Everything is read from the parts' own counters at scrape time (a collector),
except the histograms fed as things happen: AMI action latency (through
:meth:`AMIClient.add_action_listener <salara.ami.client.AMIClient.add_action_listener>`),
API request duration (:class:`~salara.api.requestmetrics.MetricsMiddleware`, kept by
:mod:`salara.requesttally`), webhook POST duration (``DeliveryWorker.on_attempt``)
and CRM lookup duration (``Router.on_lookup``), both hooked up by :class:`Metrics`
from its :class:`Sources`. Nothing here runs in the AMI protocol core; the
per-event cost is one dict increment. The process collector of
prometheus_client (``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
``process_open_fds``...) is in the same registry.

Metrics (all prefixed ``salara_``):

- ``build_info{version,python}`` (always 1);
- ``ami_up{pbx}`` (1 logged in and booted), ``ami_logins_total{pbx}``,
  ``ami_disconnects_total{pbx}`` (each one is followed by a reconnect attempt),
  ``ami_actions_total{pbx}``, ``pbx`` being ``default`` or an ``[ami NAME]``;
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
  ``webhook_deliveries_total{outcome}`` (delivered, retried, dead);
  ``webhook_in_flight``, ``webhook_concurrency_limit`` (the adaptive limit of POSTs under way);
  ``outbox_oldest_pending_age_seconds`` (the oldest event not delivered yet; 0 when none),
  ``webhook_delivery_seconds{outcome}`` histogram (one POST to the CRM until its answer);
- ``routing_decisions_total{source}``; ``crm_lookup_seconds{outcome}`` histogram
  (outcome ``answered``, or ``failed``: no answer in time, an error), ``crm_breaker_open``
  (1 while the circuit breaker skips lookups), ``crm_breaker_failures`` (consecutive failures);
- ``fastagi_sessions`` (being served), ``fastagi_refused_total`` (every session taken),
  ``fastagi_strangers_total`` (closed at once: not from an address of ``[agi] allow``),
  ``fastagi_displaced_total`` (dropped without a variable block to make room);
- ``tracked_calls``;
- ``node_leader`` (1 while this node leads; :class:`salara.nodes.LeaderGauge`, always 1 on SQLite).
"""

from __future__ import annotations

import logging
import platform
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import salara
from salara.ami.messages import Event
from salara.requesttally import RequestTally
from salara.series import LatencySeries
from salara.store.interface import StoreError
from salara.store.records import OPEN_STATUSES

if TYPE_CHECKING:
    from salara.agi.server import AGIServer
    from salara.ami.client import AMIClient
    from salara.calls.tracking import CallTracker
    from salara.control import CallControl
    from salara.crm.delivery import DeliveryWorker
    from salara.events.hub import EventHub
    from salara.events.pipeline import EventPipeline
    from salara.routing.script import Router
    from salara.store.interface import Store
    from salara.store.records import Result

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
BUILD_LABELS: Final = ("version", "python")
ACTION_BUCKETS_S: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STREAMING_ROUTES: Final = frozenset({"/v1/events", "/ui/api/calls/live"})
"""Routes whose requests last as long as the client stays: counted, not timed."""
DELIVERY_OUTCOMES: Final = {"delivered": "delivered", "retry": "retried", "dead": "dead"}
"""A delivery attempt's outcome as the store records it -> its label (as ``webhook_deliveries_total``'s)."""


@dataclass
class Sources:
    """The parts whose counters the collector reads; any may be missing."""

    ami: AMIClient | None = None
    control: CallControl | None = None
    hub: EventHub | None = None
    pipeline: EventPipeline | None = None
    outbox: Store | None = None
    delivery: DeliveryWorker | None = None
    router: Router | None = None
    tracker: CallTracker | None = None
    agi: AGIServer | None = None


class Metrics:
    """salara's metrics in their own registry (one per app, so tests can build several).

    The delivery worker's ``on_attempt`` and the router's ``on_lookup`` of
    ``sources`` are set to feed the latency histograms.
    """

    def __init__(self, sources: Sources | None = None) -> None:
        # No *_created series: they double the output and nobody graphs them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.sources = sources if sources is not None else Sources()
        self.registry = CollectorRegistry(auto_describe=True)
        self.events: Counter[str] = Counter()
        """AMI events received, by type (filled by :meth:`count_event`)."""
        self._request_labels: dict[tuple[str, str, int], tuple[str, str, bool]] = {}
        self.lookup_series = LatencySeries()
        """CRM lookup durations over the last hour, for the console's chart (:mod:`salara.series`)."""
        self.delivery_series = LatencySeries()
        """Webhook POST durations over the last hour, for the console's chart."""
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
        self.requests = RequestTally(REQUEST_BUCKETS_S)
        """``api_requests_total`` and ``api_request_seconds`` (:mod:`salara.requesttally`)."""
        self.delivery_seconds = Histogram(
            "salara_webhook_delivery_seconds",
            "Time from POSTing an event to the CRM to its answer or failure, by outcome, seconds",
            ["outcome"],
            buckets=REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        self.lookup_seconds = Histogram(
            "salara_crm_lookup_seconds",
            "CRM routing lookups tried, by outcome (answered, failed), seconds",
            ["outcome"],
            buckets=REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self.registry.register(_Collector(self))
        if self.sources.delivery is not None:
            for outcome in DELIVERY_OUTCOMES.values():
                self.delivery_seconds.labels(outcome)
            self.sources.delivery.on_attempt = self.observe_delivery
        if self.sources.router is not None:
            for outcome in ("answered", "failed"):
                self.lookup_seconds.labels(outcome)
            self.sources.router.on_lookup = self.observe_lookup

    def count_event(self, event: Event) -> None:
        self.events[event.name] += 1

    def observe_action(self, name: str, seconds: float, outcome: str) -> None:
        self.action_seconds.labels(name).observe(seconds)
        if outcome != "success":
            self.action_failures.labels(name, outcome).inc()

    def observe_delivery(self, result: Result, seconds: float) -> None:
        self.delivery_seconds.labels(DELIVERY_OUTCOMES.get(result.outcome, result.outcome)).observe(seconds)
        self.delivery_series.observe(seconds, time.time())

    def observe_lookup(self, answered: bool, seconds: float) -> None:
        self.lookup_seconds.labels("answered" if answered else "failed").observe(seconds)
        self.lookup_series.observe(seconds, time.time())

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request (``route`` its template) and, but for streams, its duration in seconds."""
        key = (method, route, status)
        labels = self._request_labels.get(key)
        if labels is None:
            labels = self._labels_of(method, route, status)
        label, status_text, timed = labels
        self.requests.count(label, route, status_text)
        if timed:
            self.requests.observe(label, route, seconds)

    def _labels_of(self, method: str, route: str, status: int) -> tuple[str, str, bool]:
        # Methods, route templates and statuses are few; the dict stays small (bounded anyway).
        labels = (method if method in METHODS else "OTHER", str(status), route not in STREAMING_ROUTES)
        if len(self._request_labels) < 4096:
            self._request_labels[(method, route, status)] = labels
        return labels

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
        build = GaugeMetricFamily("salara_build_info", "salara's version and Python's (always 1)", labels=BUILD_LABELS)
        build.add_metric([salara.__version__, platform.python_version()], 1)
        yield build
        yield from metrics.requests.families()
        events = CounterMetricFamily("salara_ami_events", "AMI events received, by type", labels=["event"])
        for name, count in sorted(metrics.events.items()):
            events.add_metric([name], count)
        yield events
        if sources.control is not None:
            yield from _ami({site.name: site.ami for site in sources.control.sites})
        elif sources.ami is not None:
            yield from _ami({"default": sources.ami})
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
            for outcome, count in (("delivered", stats.delivered), ("retried", stats.retried), ("dead", stats.dead)):
                deliveries.add_metric([outcome], count)
            yield deliveries
            worker = sources.delivery
            yield GaugeMetricFamily("salara_webhook_in_flight", "Event POSTs to the CRM under way", worker.in_flight)
            yield GaugeMetricFamily(
                "salara_webhook_concurrency_limit",
                "Event POSTs allowed under way now (adaptive, up to [outbox] concurrency)",
                worker.allowed,
            )
        if sources.router is not None:
            decisions = CounterMetricFamily(
                "salara_routing_decisions", "Incoming-call routing decisions, by source", labels=["source"]
            )
            for source, count in sorted(sources.router.decisions.items()):
                decisions.add_metric([str(source)], count)
            yield decisions
            breaker = sources.router.breaker
            yield GaugeMetricFamily(
                "salara_crm_breaker_open",
                "1 while the CRM circuit breaker skips lookups (open or half-open)",
                int(breaker.open),
            )
            yield GaugeMetricFamily(
                "salara_crm_breaker_failures",
                "Consecutive CRM lookup failures (the breaker opens at [routing] breaker_failures)",
                breaker.consecutive,
            )
        if sources.agi is not None:
            agi = sources.agi
            yield GaugeMetricFamily("salara_fastagi_sessions", "FastAGI sessions being served", agi.active_sessions)
            yield CounterMetricFamily(
                "salara_fastagi_refused", "FastAGI connections refused: every session taken", agi.refused
            )
            yield CounterMetricFamily(
                "salara_fastagi_strangers", "FastAGI connections closed at once: not from [agi] allow", agi.strangers
            )
            yield CounterMetricFamily(
                "salara_fastagi_displaced",
                "FastAGI connections without a variable block dropped to make room",
                agi.displaced,
            )
        if sources.tracker is not None:
            yield GaugeMetricFamily("salara_tracked_calls", "Calls tracked for events", len(sources.tracker.calls))


def _ami(clients: dict[str, AMIClient]) -> Iterator[Metric]:
    up = GaugeMetricFamily("salara_ami_up", "1 while AMI is logged in and Asterisk fully booted", labels=["pbx"])
    logins = CounterMetricFamily("salara_ami_logins", "AMI logins (the first and every reconnect)", labels=["pbx"])
    lost = CounterMetricFamily("salara_ami_disconnects", "AMI sessions lost after login", labels=["pbx"])
    actions = CounterMetricFamily("salara_ami_actions", "AMI actions sent", labels=["pbx"])
    for name, ami in clients.items():
        stats = ami.stats
        up.add_metric([name], int(ami.ready))
        logins.add_metric([name], stats.connects)
        lost.add_metric([name], stats.disconnects)
        actions.add_metric([name], stats.actions)
    yield from (up, logins, lost, actions)


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


def _outbox(outbox: Store) -> Iterator[Metric]:
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
    for status in ("pending", "retrying", "sending", "dead", "delivered"):
        by_status.add_metric([status], getattr(counts, status))
    yield by_status
    yield CounterMetricFamily("salara_outbox_dropped", "Undelivered events dropped at the size bound", outbox.dropped)
    try:
        oldest = outbox.list_events(OPEN_STATUSES, limit=1)
    except StoreError as exc:
        log.warning("outbox metrics unavailable: %s", exc)
        return
    age_s = max(0.0, time.time() - oldest[0].created_at) if oldest else 0.0
    yield GaugeMetricFamily(
        "salara_outbox_oldest_pending_age_seconds",
        "Age of the oldest event not delivered yet (0: none), seconds",
        age_s,
    )
