"""The request tallies render exactly as prometheus_client's own Counter and Histogram would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from runtime.fleet.chutes import ChuteSet
from runtime.observability.metrics import DURATION_BUCKETS, TTFT_BUCKETS, Metrics

# Bucket bounds themselves, values between them, below the first and above the last.
VALUES = (0.0, 0.001, 0.005, 0.0051, 0.1, 1, 2.5, 299.9, 300, 1000)


def lines(registry: CollectorRegistry, prefix: str) -> set[str]:
    text = generate_latest(registry).decode()
    return {ln for ln in text.splitlines() if ln.startswith(prefix) and "_created" not in ln}


def reference() -> CollectorRegistry:
    registry = CollectorRegistry()
    kw = {"namespace": "chutebox", "registry": registry}
    duration = Histogram("request_duration_seconds", "d", ["chute", "route"],
                         buckets=DURATION_BUCKETS, **kw)  # fmt: skip
    ttft = Histogram("time_to_first_token_seconds", "t", ["chute"], buckets=TTFT_BUCKETS, **kw)
    requests = Counter("requests", "r", ["chute", "route", "status"], **kw)
    prompt = Counter("prompt_tokens", "p", ["chute"], **kw)
    for value in VALUES:
        duration.labels("tiny", "/v1/chat/completions").observe(value)
        ttft.labels("tiny").observe(value)
        requests.labels("tiny", "/v1/chat/completions", "200").inc()
        prompt.labels("tiny").inc(7)
    requests.labels("", "other", "404").inc()
    return registry


def test_tallies_render_as_prometheus_client_would() -> None:
    metrics = Metrics(ChuteSet([]))
    for value in VALUES:
        metrics.answered("tiny", "/v1/chat/completions", 200, value)
        metrics.stream_meters("tiny").ttft.observe(value)
        metrics.tokens("tiny", 7, 3)
    metrics.answered("", "other", 404, 0.001)  # not timed: it reached no chute

    ours, theirs = metrics.registry, reference()
    for prefix in ("chutebox_request_duration_seconds_", "chutebox_time_to_first_token_seconds_",
                   "chutebox_requests_total", "chutebox_prompt_tokens_total"):  # fmt: skip
        expected = lines(theirs, prefix)
        assert expected and lines(ours, prefix) == expected, prefix
