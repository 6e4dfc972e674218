"""The metrics added for operators: build info, process, outbox lag, latency histograms, breaker, FastAGI.

Each is read from (or fed by) the real part: an outbox on disk, a delivery
worker posting to a CRM on 127.0.0.1, a router asking a CRM that answers or
fails, a FastAGI server with a session open.
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import salara
from salara import config as config_module
from salara.agi.server import AGIServer
from salara.crm.lookup import LookupAnswer
from salara.metrics import Metrics, Sources
from salara.pbx.records import ExtensionInfo
from salara.routing.script import Router
from salara.routing.table import RouteTable
from salara.store.sqlite import Outbox
from tests.unit.crm_server import RecordingCRM, add, fast_worker, running, until


def samples(metrics: Metrics) -> dict[str, list[Sample]]:
    """The scrape's samples by sample name (``_total``, ``_bucket``... included)."""
    found: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def value(metrics: Metrics, name: str, **labels: str) -> float:
    matching = [s.value for s in samples(metrics).get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, (name, labels, matching)
    return matching[0]


def test_build_info_and_process_metrics_are_in_salaras_registry() -> None:
    metrics = Metrics()
    assert value(metrics, "salara_build_info", version=salara.__version__, python=platform.python_version()) == 1
    found = samples(metrics)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        assert name in found, name
    assert value(metrics, "process_start_time_seconds") <= time.time()


def test_the_oldest_pending_events_age_is_that_of_the_first_not_delivered(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", max_rows=100) as outbox:
        metrics = Metrics(Sources(outbox=outbox))
        assert value(metrics, "salara_outbox_oldest_pending_age_seconds") == 0
        add(outbox, None, "A1")
        outbox._db.execute("UPDATE events SET created_at = created_at - 120")  # stored two minutes ago
        add(outbox, None, "B1")
        assert 120 <= value(metrics, "salara_outbox_oldest_pending_age_seconds") < 180


@pytest.fixture
async def crm() -> AsyncIterator[RecordingCRM]:
    server = RecordingCRM()
    await server.start()
    yield server
    await server.stop()


async def test_webhook_posts_are_timed_by_outcome(crm: RecordingCRM, tmp_path: Path) -> None:
    statuses = iter([500, 200, 410])

    async def policy(request: object) -> int:
        return next(statuses)

    crm.policy = policy
    with Outbox(tmp_path / "outbox.db", max_rows=100) as outbox:
        worker = fast_worker(outbox, crm.url, concurrency=1)
        metrics = Metrics(Sources(outbox=outbox, delivery=worker))
        for outcome in ("delivered", "retried", "dead"):  # every series from the start
            assert value(metrics, "salara_webhook_delivery_seconds_count", outcome=outcome) == 0
        async with running(worker):
            add(outbox, worker, "A1", "A2")
            await until(lambda: len(crm.answered) == 3, "a retry, a delivery and a 410")
            await until(lambda: worker.stats.dead == 1, "the 410 counted")
        for outcome in ("delivered", "retried", "dead"):
            assert value(metrics, "salara_webhook_delivery_seconds_count", outcome=outcome) == 1, outcome
            assert 0 < value(metrics, "salara_webhook_delivery_seconds_sum", outcome=outcome) < 5
        assert value(metrics, "salara_webhook_delivery_seconds_bucket", outcome="delivered", le="+Inf") == 1


@dataclass
class FlakyCRM:
    """The CRM's lookup: answers ``answers`` in turn ("fail" raises)."""

    answers: list[str] = field(default_factory=list)

    async def lookup(self, caller: str) -> LookupAnswer:
        await asyncio.sleep(0.01)
        answer = self.answers.pop(0)
        if answer == "fail":
            raise ConnectionError("CRM down")
        return LookupAnswer(answer)


@dataclass
class IdlePBX:
    async def extension_state(self, exten: str, context: str) -> ExtensionInfo:
        return ExtensionInfo(exten, context, None, 0, "Idle", True)


async def test_crm_lookups_are_timed_and_the_breaker_state_shown() -> None:
    config = config_module.load(
        None, environ={"SALARA_GENERAL_CURLOPT_TIMEOUT": "2", "SALARA_ROUTING_BREAKER_FAILURES": "2"}
    )
    lookup = FlakyCRM(["9001", "fail", "fail"])
    router = Router(config, IdlePBX(), lookup, None, RouteTable(None, {}))  # type: ignore[arg-type]
    metrics = Metrics(Sources(router=router))
    assert value(metrics, "salara_crm_breaker_open") == 0
    assert value(metrics, "salara_crm_lookup_seconds_count", outcome="failed") == 0
    for _ in range(3):
        await router.decide("5551234", "phones")
    assert value(metrics, "salara_crm_lookup_seconds_count", outcome="answered") == 1
    assert value(metrics, "salara_crm_lookup_seconds_count", outcome="failed") == 2
    assert 0.01 <= value(metrics, "salara_crm_lookup_seconds_sum", outcome="answered") < 2
    assert value(metrics, "salara_crm_breaker_open") == 1
    assert value(metrics, "salara_crm_breaker_failures") == 2
    await router.decide("5551234", "phones")  # skipped while the breaker is open: not a lookup
    assert value(metrics, "salara_crm_lookup_seconds_count", outcome="failed") == 2


async def test_fastagi_sessions_are_counted_while_served() -> None:
    release = asyncio.Event()

    async def handler(session: object) -> None:
        await release.wait()

    server = AGIServer(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    await server.start()
    metrics = Metrics(Sources(agi=server))
    try:
        assert value(metrics, "salara_fastagi_sessions") == 0
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\nagi_request: agi://127.0.0.1/route\n\n")
        await writer.drain()
        deadline = time.monotonic() + 5
        while value(metrics, "salara_fastagi_sessions") != 1:
            assert time.monotonic() < deadline, "the session was never counted"
            await asyncio.sleep(0.01)
        assert value(metrics, "salara_fastagi_refused_total") == 0
        assert value(metrics, "salara_fastagi_displaced_total") == 0
        release.set()
        writer.close()
    finally:
        await server.close()


def test_request_counts_expose_as_prometheus_client_s_own_counter_and_histogram() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest
    from prometheus_client import Counter as PromCounter

    from salara.metrics import REQUEST_BUCKETS_S

    metrics = Metrics()
    registry = CollectorRegistry()
    counter = PromCounter(
        "salara_api_requests",
        "HTTP API requests by method, route template and status",
        ["method", "route", "status"],
        registry=registry,
    )
    histogram = Histogram(
        "salara_api_request_seconds",
        "HTTP API request duration by method and route template, seconds (streams excluded)",
        ["method", "route"],
        buckets=REQUEST_BUCKETS_S,
        registry=registry,
    )
    # On a bound, between two, beyond the last, and a stream (counted, not timed).
    seen = [
        ("POST", "/{path:path}", 200, 0.001),
        ("POST", "/{path:path}", 200, 0.0031),
        ("GET", "/v1/calls", 404, 11.0),
    ]
    seen += [("GET", "/v1/events", 200, 30.0), ("BREW", "/{path:path}", 405, 0.2)]
    for method, route, status, seconds in seen:
        metrics.observe_request(method, route, status, seconds)
        label = method if method != "BREW" else "OTHER"
        counter.labels(label, route, str(status)).inc()
        if route != "/v1/events":
            histogram.labels(label, route).observe(seconds)

    def families(text: bytes) -> dict[str, list[Sample]]:
        wanted = ("salara_api_requests", "salara_api_request_seconds")
        found = {f.name: f.samples for f in text_string_to_metric_families(text.decode()) if f.name in wanted}
        return {
            name: sorted(samples, key=lambda s: (s.name, sorted(s.labels.items()))) for name, samples in found.items()
        }

    ours, theirs = families(metrics.render()), families(generate_latest(registry))
    assert ours == theirs and len(ours["salara_api_request_seconds"]) == 3 * (len(REQUEST_BUCKETS_S) + 3)
    [bucket] = [
        s.value
        for s in ours["salara_api_request_seconds"]
        if s.labels.get("le") == "0.001" and s.labels["method"] == "POST"
    ]
    assert bucket == 1  # "le": a duration on a bound is in its bucket
