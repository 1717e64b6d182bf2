"""The status page's live traffic: per-second buckets, reused as the window turns."""

from __future__ import annotations

from runtime.observability.traffic import RATE_SECONDS, WINDOW, Traffic


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rates_count_the_last_seconds_and_a_reused_bucket_starts_empty() -> None:
    clock = Clock(1000.2)
    traffic = Traffic(clock)
    for _ in range(30):
        traffic.answered("tiny", 200, tokens=4, ttft=0.05)
    traffic.answered("tiny", 429)
    traffic.answered("", 200)  # no chute took it: not counted anywhere
    clock.now = 1001.7
    traffic.answered("tiny", 200, tokens=2, ttft=0.01)
    snap = traffic.snapshot("tiny")
    assert snap["requests_per_s"] == round(32 / RATE_SECONDS, 2)
    assert snap["tokens_per_s"] == round(122 / RATE_SECONDS, 1)
    assert snap["rejected_429"] == 1 and snap["ttft_p50_ms"] == 50.0
    # A whole window later the first second's bucket comes round again: it starts afresh.
    clock.now = 1000.5 + WINDOW
    traffic.answered("tiny", 200, tokens=1)
    snap = traffic.snapshot("tiny")
    assert snap["requests_per_s"] == round(1 / RATE_SECONDS, 2)
    assert snap["rejected_429"] == 0 and snap["ttft_p50_ms"] == 10.0
    assert traffic.snapshot("other")["requests_per_s"] == 0
