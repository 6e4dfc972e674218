"""The HTTP API's request counts and durations, kept as plain numbers and exposed at scrape time.

``prometheus_client``'s labelled counter and histogram take a lock for each
increment and each bucket, which is about a tenth of a compat request's CPU.
Requests are counted on the event loop only (the service's one thread), so
:class:`RequestTally` keeps them in dicts and :meth:`RequestTally.families`
turns them into the same two families at scrape time, on the same loop:
``salara_api_requests_total{method,route,status}`` and
``salara_api_request_seconds{method,route}`` (a histogram in seconds, with
cumulative ``le`` buckets, ``_count`` and ``_sum``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class RequestTally:
    """Requests by ``(method, route, status)`` and their durations by ``(method, route)``.

    ``bounds_s`` are the histogram's upper bounds in seconds, ascending
    (``+Inf`` is added). Not thread-safe: observe and collect on one thread.
    """

    def __init__(self, bounds_s: Sequence[float]) -> None:
        self.bounds_s = tuple(bounds_s)
        self._les = [floatToGoString(bound) for bound in self.bounds_s] + ["+Inf"]  # type: ignore[no-untyped-call]
        self.counts: dict[tuple[str, str, str], int] = {}
        self._buckets: dict[tuple[str, str], list[int]] = {}
        """Per (method, route): how many durations fell in each bucket (not cumulative), ``+Inf`` last."""
        self._sums: dict[tuple[str, str], float] = {}

    def count(self, method: str, route: str, status: str) -> None:
        """One request answered ``status`` (its text: ``"200"``)."""
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1

    def observe(self, method: str, route: str, seconds: float) -> None:
        """One request's duration, in seconds."""
        key = (method, route)
        buckets = self._buckets.get(key)
        if buckets is None:
            buckets = self._buckets[key] = [0] * (len(self.bounds_s) + 1)
            self._sums[key] = 0.0
        buckets[bisect_left(self.bounds_s, seconds)] += 1  # the first bound >= seconds: prometheus' "le"
        self._sums[key] += seconds

    def families(self) -> Iterator[Metric]:
        """The two metric families, as ``prometheus_client``'s own counter and histogram would expose them."""
        requests = CounterMetricFamily(
            "salara_api_requests",
            "HTTP API requests by method, route template and status",
            labels=["method", "route", "status"],
        )
        for labels, count in self.counts.items():
            requests.add_metric(list(labels), count)
        yield requests
        seconds = HistogramMetricFamily(
            "salara_api_request_seconds",
            "HTTP API request duration by method and route template, seconds (streams excluded)",
            labels=["method", "route"],
        )
        for key, buckets in self._buckets.items():
            cumulative: list[tuple[str, float]] = []
            total = 0
            for le, count in zip(self._les, buckets, strict=True):
                total += count
                cumulative.append((le, total))
            seconds.add_metric(list(key), cumulative, self._sums[key])
        yield seconds
