"""Per-chute concurrency, as Chutes' `concurrency`: a slot per request in flight.

Over the limit a request gets 429 at once, as on Chutes, unless a wait queue is configured:
then up to `queue_size` requests wait (first come, first served) up to `queue_timeout` seconds
for a slot before their 429.
"""

from __future__ import annotations

import asyncio
from collections import deque

from runtime.errors import CapacityError


class Admission:
    """Counts requests in flight for one chute and hands out slots.

    The gateway runs on one event loop, so taking and giving back a slot needs no lock: both
    happen between awaits. A slot freed while requests wait goes straight to the oldest waiter,
    so a newcomer can never overtake the queue.
    """

    def __init__(
        self, limit: int, retry_after: int = 1, queue_size: int = 0, queue_timeout: float = 30.0
    ) -> None:
        self.limit = limit
        self.used = 0
        self.retry_after = retry_after
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self.rejected = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def take(self) -> bool:
        """Take a free slot now, if there is one and nobody waits for it (no coroutine to
        run for the common case)."""
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return True
        return False

    async def acquire(self) -> bool:
        """Take a slot, waiting in the queue if one is configured; CapacityError if none.
        True when the request had to wait."""
        if self.take():
            return False
        if len(self._waiters) >= self.queue_size:
            self._reject()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as we gave up: pass it on
            else:
                waiter.cancel()
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                self._reject(queued=True)
            raise
        return True

    def _reject(self, queued: bool = False) -> None:
        self.rejected += 1
        why = f"waited {self.queue_timeout:g}s in the queue; " if queued else ""
        raise CapacityError(
            "Max concurrency exceeded: this chute is serving "
            f"{self.used} of {self.limit} requests; {why}try again later",
            headers={"Retry-After": str(self.retry_after), **self.headers()},
        )

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; `used` stays
                return
        self.used = max(0, self.used - 1)

    def headers(self) -> dict[str, str]:
        return {
            "X-Chutes-Conn-Used": str(self.used),
            "X-Chutes-Conn-Available": str(self.limit - self.used),
            "X-Chutes-Conn-Utilization": f"{self.used / self.limit:.2f}",
        }

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """`headers()` as an ASGI reply carries them (lower-case names, bytes)."""
        return [(name.lower().encode(), value.encode()) for name, value in self.headers().items()]
