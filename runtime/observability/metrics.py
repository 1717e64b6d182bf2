"""Prometheus metrics, one `chutebox_` namespace whatever the engine.

Nothing on the request path touches prometheus_client: per-request events (requests,
latencies, tokens, disconnects) are tallied in plain counters and bucket lists, and state
(slots in flight, queue depth, rejections, engine up/down, restarts) lives in the chutes;
both are turned into metric families only when /metrics is scraped. Its Counter and
Histogram take a lock and walk their buckets in Python per call: three of them per relayed
request cost a tenth of its CPU. Each app owns its registry.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from runtime.fleet.chutes import ChuteSet, ChuteState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NS = "chutebox_"
# Latency buckets reach from a cached embedding (ms) to a long generation (minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(slots=True)
class Tally:
    """One histogram series: a count per bucket (the last is +Inf) and the sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # Prometheus buckets are `le`: the first bound not below the value counts it.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """(`le` label, count at or below it), as the exposition format has them."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return buckets


@dataclass(frozen=True)
class RouteSeries:
    """One chute's route: its requests by status, and their durations (None where no chute
    took them: not timed)."""

    statuses: dict[int, int]
    durations: Tally | None


@dataclass(frozen=True)
class StreamMeters:
    """The tallies one chute's streams observe, looked up once per request, not per event."""

    ttft: Tally
    itl: Tally


class Metrics:
    """Every series the gateway exports; `render()` is the body of GET /metrics."""

    def __init__(self, chutes: ChuteSet) -> None:
        # By (chute, route): one lookup per request finds both its count and its timing.
        self.routes: dict[tuple[str, str], RouteSeries] = {}
        self.streams: dict[str, StreamMeters] = {}
        self.token_counts: dict[str, list[int]] = {}
        self.disconnects: dict[tuple[str, str], int] = {}
        self.migrations: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(RequestCollector(self))
        self.registry.register(ChuteCollector(chutes))

    def answered(self, chute: str, route: str, status: int, seconds: float) -> None:
        """One request done: counted by status, and timed when it reached a chute."""
        series = self.routes.get((chute, route))
        if series is None:
            timed = Tally(DURATION_BUCKETS) if chute else None
            series = self.routes[(chute, route)] = RouteSeries({}, timed)
        statuses = series.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if series.durations is not None:
            series.durations.observe(seconds)

    def tokens(self, chute: str, prompt: int, completion: int) -> None:
        counts = self.token_counts.get(chute)
        if counts is None:
            counts = self.token_counts[chute] = [0, 0]
        counts[0] += prompt
        counts[1] += completion

    def disconnected(self, chute: str, route: str) -> None:
        self.disconnects[(chute, route)] = self.disconnects.get((chute, route), 0) + 1

    def migrated(self, chute: str) -> None:
        self.migrations[chute] = self.migrations.get(chute, 0) + 1

    def stream_meters(self, chute: str) -> StreamMeters:
        meters = self.streams.get(chute)
        if meters is None:
            meters = self.streams[chute] = StreamMeters(Tally(TTFT_BUCKETS), Tally(ITL_BUCKETS))
        return meters

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestCollector(Collector):
    """The per-request tallies of `Metrics`, as metric families."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        requests = _counter("requests", "Requests answered, by chute, route and status",
                            "chute", "route", "status")  # fmt: skip
        duration = _histogram("request_duration_seconds", "End-to-end request time at the "
                              "gateway", "chute", "route")  # fmt: skip
        for (chute, route), series in m.routes.items():
            for status, count in series.statuses.items():
                requests.add_metric([chute, route, str(status)], count)
            if series.durations is not None:
                tally = series.durations
                duration.add_metric([chute, route], tally.cumulative(), tally.total)
        ttft = _histogram("time_to_first_token_seconds", "Request start to first stream event",
                          "chute")  # fmt: skip
        itl = _histogram("inter_token_latency_seconds", "Time between stream events", "chute")
        for chute, meters in m.streams.items():
            ttft.add_metric([chute], meters.ttft.cumulative(), meters.ttft.total)
            itl.add_metric([chute], meters.itl.cumulative(), meters.itl.total)
        prompt = _counter("prompt_tokens", "Prompt tokens, from usage", "chute")
        completion = _counter("completion_tokens", "Completion tokens, from usage", "chute")
        for chute, (prompt_count, completion_count) in m.token_counts.items():
            prompt.add_metric([chute], prompt_count)
            completion.add_metric([chute], completion_count)
        disconnects = _counter("client_disconnects", "Clients gone before their reply ended",
                               "chute", "route")  # fmt: skip
        # Each (chute, route) that answered a request has its series, at 0 until a client
        # leaves: rate() and alerts need the series to exist before its first event.
        for labels in m.routes.keys() | m.disconnects.keys():
            disconnects.add_metric(list(labels), m.disconnects.get(labels, 0))
        migrations = _counter(
            "request_migrations", "Requests moved off an engine that died under them", "chute"
        )
        # At 0 from a chute's first answer, as the disconnects are.
        for chute in {c for c, _ in m.routes if c} | m.migrations.keys():
            migrations.add_metric([chute], m.migrations.get(chute, 0))
        yield from (requests, duration, ttft, itl, prompt, completion, disconnects, migrations)


def _counter(name: str, doc: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(NS + name, doc, labels=list(labels))


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(NS + name, doc, labels=list(labels))


def _histogram(name: str, doc: str, *labels: str) -> HistogramMetricFamily:
    return HistogramMetricFamily(NS + name, doc, labels=list(labels))


class ChuteCollector(Collector):
    """Slots, queue, rejections and engine health, read from the chutes when scraped."""

    def __init__(self, chutes: ChuteSet) -> None:
        self.chutes = chutes

    def collect(self) -> Iterator[Metric]:
        ns = NS
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
        routed = _counter("routed_requests", "Requests sent to each replica", "chute", "replica")
        hits = _counter(
            "route_affinity_hits",
            "Requests sent to a replica holding their prompt's prefix",
            "chute",
        )
        spills = _counter(
            "route_spills",
            "Requests sent past a replica holding their prefix, to one that could start sooner",
            "chute",
        )
        exact = _counter(
            "route_exact_hits", "Affinity hits found in the engines' KV-cache events", "chute"
        )
        loads = _counter("chute_loads", "On-demand loads of a chute's engines", "chute")
        unloads = _counter("chute_unloads", "Unloads of an on-demand chute's engines", "chute")
        load_time = _counter("chute_load_seconds", "Seconds its on-demand loads took", "chute")
        sleeps = _counter("chute_sleeps", "Unloads that put the engines to sleep", "chute")
        wakes = _counter("chute_wakes", "Loads that woke sleeping engines", "chute")
        blocks = _gauge("route_prefix_blocks", "Prompt-prefix blocks the router tracks", "chute")
        tracked = _gauge("route_prefix_bytes", "Memory budgeted to those blocks", "chute")
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
            router = chute.router
            for index, count in router.stats.routed.items():
                routed.add_metric([chute.name, str(index)], count)
            hits.add_metric([chute.name], router.stats.affinity_hits)
            spills.add_metric([chute.name], router.stats.spills)
            exact.add_metric([chute.name], router.stats.exact_hits)
            if chute.on_demand:
                loads.add_metric([chute.name], chute.loads)
                unloads.add_metric([chute.name], chute.unloads)
                load_time.add_metric([chute.name], chute.load_seconds)
                sleeps.add_metric([chute.name], chute.sleeps)
                wakes.add_metric([chute.name], chute.wakes)
            blocks.add_metric([chute.name], len(router.index))
            tracked.add_metric([chute.name], router.index.bytes)
        yield from (in_flight, queued, limit, rejected, up, restarts)
        yield from (routed, hits, spills, exact, blocks, tracked)
        yield from (loads, unloads, load_time, sleeps, wakes)
