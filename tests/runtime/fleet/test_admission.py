"""Admission: slots, the optional FIFO wait queue, and that every slot comes back."""

from __future__ import annotations

import asyncio

import pytest

from runtime.errors import CapacityError
from runtime.fleet.admission import Admission


def test_over_the_limit_without_a_queue_is_refused_at_once() -> None:
    async def scenario() -> None:
        admission = Admission(1)
        await admission.acquire()
        with pytest.raises(CapacityError) as refused:
            await admission.acquire()
        assert refused.value.headers["Retry-After"] == "1"
        assert (admission.used, admission.rejected) == (1, 1)
        admission.release()
        assert admission.used == 0

    asyncio.run(scenario())


def test_waiters_get_slots_first_come_first_served() -> None:
    async def scenario() -> list[str]:
        admission = Admission(1, queue_size=2, queue_timeout=5)
        order: list[str] = []
        await admission.acquire()

        async def wait(name: str) -> None:
            await admission.acquire()
            order.append(name)

        first = asyncio.ensure_future(wait("first"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(wait("second"))
        await asyncio.sleep(0)
        assert admission.waiting == 2
        with pytest.raises(CapacityError):  # the queue is full
            await admission.acquire()
        admission.release()  # the held slot passes to "first"
        await first
        # A newcomer does not overtake "second", who is still waiting.
        assert admission.used == 1 and admission.waiting == 1
        admission.release()
        await second
        admission.release()
        assert (admission.used, admission.waiting) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["first", "second"]


def test_a_waiter_that_times_out_gets_429_and_leaves_the_queue() -> None:
    async def scenario() -> None:
        admission = Admission(1, queue_size=1, queue_timeout=0.05)
        await admission.acquire()
        with pytest.raises(CapacityError, match="waited 0.05s in the queue"):
            await admission.acquire()
        assert (admission.used, admission.waiting, admission.rejected) == (1, 0, 1)
        admission.release()
        assert admission.used == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    async def scenario() -> None:
        admission = Admission(1, queue_size=1, queue_timeout=5)
        await admission.acquire()
        waiter = asyncio.ensure_future(admission.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert admission.waiting == 0
        admission.release()
        assert admission.used == 0

    asyncio.run(scenario())


def test_every_reply_gets_the_slots_in_use_as_the_platform_names_them() -> None:
    admission = Admission(3)
    seen = []
    for _ in range(3):
        assert admission.take()
        seen.append(admission.raw_headers())
    admission.release()
    seen.append(admission.raw_headers())
    # The raw form (made once per count) says what the platform's headers say, each time.
    for raw, used in zip(seen, (1, 2, 3, 2), strict=True):
        assert raw == [
            (b"x-chutes-conn-used", b"%d" % used),
            (b"x-chutes-conn-available", b"%d" % (3 - used)),
            (b"x-chutes-conn-utilization", b"%.2f" % (used / 3)),
        ]
    assert dict(seen[-1]) == {
        k.lower().encode(): v.encode() for k, v in admission.headers().items()
    }
