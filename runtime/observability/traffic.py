"""Live traffic per chute, for the status page: what the last few seconds looked like.

A ring of one-second buckets per chute (the last `WINDOW` seconds), filled as requests end:
requests, 429s, completion tokens and the time to first token of streams. Memory is fixed
whatever the traffic: `WINDOW` buckets per chute, and at most `SAMPLES` first-token times in a
bucket. Rates are over the last `RATE_SECONDS` seconds, the current one included (so a fresh burst
shows at once, a little low); 429s and the p50 are over the whole window.
Separate from the Prometheus metrics, which count since start and may be switched off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WINDOW = 60
RATE_SECONDS = 10
SAMPLES = 256


@dataclass
class _Bucket:
    second: int = -1
    requests: int = 0
    rejected: int = 0
    tokens: int = 0
    ttft: list[float] = field(default_factory=list)


class _Ring:
    def __init__(self) -> None:
        self.buckets = [_Bucket() for _ in range(WINDOW)]

    def at(self, second: int) -> _Bucket:
        bucket = self.buckets[second % WINDOW]
        if bucket.second != second:
            bucket.second, bucket.requests, bucket.rejected, bucket.tokens = second, 0, 0, 0
            bucket.ttft = []
        return bucket

    def recent(self, now: int, seconds: int) -> list[_Bucket]:
        return [b for b in self.buckets if now - seconds < b.second <= now]


class Traffic:
    """Per-chute windows of recent traffic; `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._rings: dict[str, _Ring] = {}

    def answered(self, chute: str, status: int, tokens: int = 0, ttft: float | None = None) -> None:
        """Count one finished request of `chute` (nothing for requests no chute took)."""
        if not chute:
            return
        ring = self._rings.get(chute)
        if ring is None:
            ring = self._rings[chute] = _Ring()
        second = int(self.clock())
        bucket = ring.buckets[second % WINDOW]
        if bucket.second != second:  # the first request of a new second
            bucket = ring.at(second)
        bucket.requests += 1
        bucket.rejected += status == 429
        bucket.tokens += tokens
        if ttft is not None and len(bucket.ttft) < SAMPLES:
            bucket.ttft.append(ttft)

    def snapshot(self, chute: str) -> dict[str, Any]:
        """Requests/s and tokens/s over the last seconds, 429s and p50 TTFT over the window."""
        ring = self._rings.get(chute)
        now = int(self.clock())
        rate = ring.recent(now, RATE_SECONDS) if ring else []
        window = ring.recent(now, WINDOW) if ring else []
        samples = sorted(t for b in window for t in b.ttft)
        p50 = samples[math.ceil(len(samples) / 2) - 1] * 1000 if samples else None
        return {
            "requests_per_s": round(sum(b.requests for b in rate) / RATE_SECONDS, 2),
            "tokens_per_s": round(sum(b.tokens for b in rate) / RATE_SECONDS, 1),
            "rejected_429": sum(b.rejected for b in window),
            "ttft_p50_ms": round(p50, 1) if p50 is not None else None,
            "window_s": WINDOW,
        }
