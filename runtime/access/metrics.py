"""Per-key Prometheus counters, labelled by key name (never the key), read from the meter
when /metrics is scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.access.meter import Meter

NS = "chutebox_key_"
# (metric name, the Counts field it reads, help)
SERIES = (
    ("requests", "requests", "Requests served, by key and chute"),
    ("input_tokens", "input_tokens", "Prompt tokens, from the engines' usage"),
    ("output_tokens", "output_tokens", "Output tokens, from the engines' usage"),
    ("cached_tokens", "cached_tokens", "Prompt tokens served from the prefix cache"),
    ("images", "images", "Images generated"),
    ("compute_seconds", "compute_seconds", "Seconds of custom chutes' cords"),
)  # fmt: skip


class KeyCollector(Collector):
    """What each key used since the gateway started."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def collect(self) -> Iterator[Metric]:
        for name, attribute, doc in SERIES:
            family = CounterMetricFamily(NS + name, doc, labels=["key", "chute"])
            for (key, chute), counts in sorted(self.meter.totals.items()):
                family.add_metric([key, chute], getattr(counts, attribute))
            yield family
