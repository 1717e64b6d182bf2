"""The dynamic batcher with a plain function: order, ownership, batching, failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from engines.batching import Batcher


def double(values: Sequence[int]) -> list[int]:
    return [v * 2 for v in values]


def run(coro_factory):  # type: ignore[no-untyped-def]
    return asyncio.run(coro_factory())


def test_concurrent_requests_are_batched_and_each_gets_its_own_results() -> None:
    async def scenario() -> tuple[list[list[int]], list[int]]:
        batcher = Batcher(double, max_batch=16, max_wait=0.05)
        batcher.start()
        requests = [list(range(i * 3, i * 3 + 3)) for i in range(20)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.stop()
        return results, batcher.batch_sizes

    results, sizes = run(scenario)
    assert results == [[v * 2 for v in range(i * 3, i * 3 + 3)] for i in range(20)]
    assert sum(sizes) == 60 and max(sizes) == 16 and len(sizes) < 20


def test_a_lone_request_waits_at_most_max_wait() -> None:
    async def scenario() -> list[int]:
        batcher = Batcher(double, max_batch=64, max_wait=0.001)
        batcher.start()
        result = await asyncio.wait_for(batcher.submit([5]), 5)
        await batcher.stop()
        return result

    assert run(scenario) == [10]


def test_a_failing_batch_fails_its_requests_and_the_loop_goes_on() -> None:
    def fragile(values: Sequence[int]) -> list[int]:
        if -1 in values:
            raise ValueError("bad input")
        return double(values)

    async def scenario() -> list[int]:
        batcher = Batcher(fragile, max_batch=4, max_wait=0)
        batcher.start()
        with pytest.raises(ValueError, match="bad input"):
            await batcher.submit([-1])
        result = await batcher.submit([3])
        await batcher.stop()
        return result

    assert run(scenario) == [6]


def test_cancelled_requests_are_skipped() -> None:
    gate = threading.Event()
    seen: list[int] = []

    def slow(values: Sequence[int]) -> list[int]:
        gate.wait(5)
        seen.extend(values)
        return double(values)

    async def scenario() -> list[int]:
        batcher = Batcher(slow, max_batch=1, max_wait=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.05)  # the first batch is running
        abandoned = asyncio.ensure_future(batcher.submit([2]))
        await asyncio.sleep(0.01)
        abandoned.cancel()
        gate.set()
        await first
        result = await batcher.submit([3])
        await batcher.stop()
        return result

    assert run(scenario) == [6]
    assert seen == [1, 3]
