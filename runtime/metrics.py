"""Prometheus metrics, one `chutebox_` namespace whatever the engine.

Per-request events (requests, latencies, tokens, disconnects) are counted as they happen;
state (slots in flight, queue depth, rejections, engine up/down, restarts) is read from the
chutes at scrape time, so the hot path does no bookkeeping twice. Each app owns its registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.chutes import ChuteSet, ChuteState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets reach from a cached embedding (ms) to a long generation (minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(frozen=True)
class StreamMeters:
    """The children one chute's streams observe, looked up once per request, not per event."""

    ttft: Histogram
    itl: Histogram


class Metrics:
    """Every series the gateway exports; `render()` is the body of GET /metrics."""

    def __init__(self, chutes: ChuteSet) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, namespace="chutebox", registry=reg)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, doc, labels, namespace="chutebox", registry=reg, buckets=buckets)

        self.requests = counter(
            "requests", "Requests answered, by chute, route and status", "chute", "route", "status"
        )
        self.duration = histogram(
            "request_duration_seconds", "End-to-end request time at the gateway",
            DURATION_BUCKETS, "chute", "route",
        )  # fmt: skip
        self.ttft = histogram(
            "time_to_first_token_seconds", "Request start to first stream event", TTFT_BUCKETS,
            "chute",
        )  # fmt: skip
        self.itl = histogram(
            "inter_token_latency_seconds", "Time between stream events", ITL_BUCKETS, "chute"
        )
        self.prompt_tokens = counter("prompt_tokens", "Prompt tokens, from usage", "chute")
        self.completion_tokens = counter(
            "completion_tokens", "Completion tokens, from usage", "chute"
        )
        self.disconnects = counter(
            "client_disconnects", "Clients gone before their reply ended", "chute", "route"
        )
        reg.register(ChuteCollector(chutes))
        self._streams: dict[str, StreamMeters] = {}
        # Label lookups take a lock and build tuples: done once per label set, not per request.
        self._answered: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}
        self._tokens: dict[str, tuple[Any, Any]] = {}

    def answered(self, chute: str, route: str, status: int, seconds: float) -> None:
        """One request done: counted by status, and timed when it reached a chute."""
        key = (chute, route, status)
        counter = self._answered.get(key)
        if counter is None:
            counter = self._answered[key] = self.requests.labels(chute, route, str(status))
        counter.inc()
        if chute:
            histogram = self._timed.get((chute, route))
            if histogram is None:
                histogram = self._timed[(chute, route)] = self.duration.labels(chute, route)
            histogram.observe(seconds)

    def tokens(self, chute: str, prompt: int, completion: int) -> None:
        counters = self._tokens.get(chute)
        if counters is None:
            counters = (self.prompt_tokens.labels(chute), self.completion_tokens.labels(chute))
            self._tokens[chute] = counters
        counters[0].inc(prompt)
        counters[1].inc(completion)

    def stream_meters(self, chute: str) -> StreamMeters:
        meters = self._streams.get(chute)
        if meters is None:
            meters = StreamMeters(self.ttft.labels(chute), self.itl.labels(chute))
            self._streams[chute] = meters
        return meters

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ChuteCollector(Collector):
    """Slots, queue, rejections and engine health, read from the chutes when scraped."""

    def __init__(self, chutes: ChuteSet) -> None:
        self.chutes = chutes

    def collect(self) -> Iterator[Metric]:
        ns = "chutebox_"
        in_flight = GaugeMetricFamily(ns + "requests_in_flight", "Slots taken", labels=["chute"])
        queued = GaugeMetricFamily(ns + "requests_queued", "Requests waiting for a slot",
                                   labels=["chute"])  # fmt: skip
        limit = GaugeMetricFamily(ns + "concurrency_limit", "Slots per chute", labels=["chute"])
        rejected = CounterMetricFamily(ns + "admission_rejections", "429s for lack of a slot",
                                       labels=["chute"])  # fmt: skip
        up = GaugeMetricFamily(ns + "engine_up", "1 while the replica's engine serves",
                               labels=["chute", "replica"])  # fmt: skip
        restarts = CounterMetricFamily(ns + "engine_restarts", "Engine restarts after a fault",
                                       labels=["chute", "replica"])  # fmt: skip
        for chute in self.chutes:
            admission = chute.admission
            in_flight.add_metric([chute.name], admission.used)
            queued.add_metric([chute.name], admission.waiting)
            limit.add_metric([chute.name], admission.limit)
            rejected.add_metric([chute.name], admission.rejected)
            for replica in chute.replicas:
                labels = [chute.name, str(replica.index)]
                up.add_metric(labels, 1.0 if replica.state is ChuteState.READY else 0.0)
                restarts.add_metric(labels, replica.restarts)
        yield from (in_flight, queued, limit, rejected, up, restarts)
