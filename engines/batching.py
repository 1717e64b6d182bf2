"""Dynamic batching: many small concurrent requests reach batch throughput.

Items from concurrent requests go into one queue; a single loop takes the first waiting item,
gathers more for at most `max_wait` seconds or until `max_batch` items, runs the batch function
in a worker thread (so the event loop keeps accepting requests), and hands every result back to
the future of the item it belongs to. Order and ownership follow from that: each request awaits
its own futures, in its own order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Item(Generic[In, Out]):
    value: In
    future: asyncio.Future[Out]


class Batcher(Generic[In, Out]):
    """Gathers items into batches for `run_batch(items) -> results` (same length, same order)."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[In]], Sequence[Out]],
        *,
        max_batch: int = 64,
        max_wait: float = 0.002,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.batch_sizes: list[int] = []
        self._queue: asyncio.Queue[_Item[In, Out]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, values: Sequence[In]) -> list[Out]:
        """Queue `values` and wait for their results, in the same order."""
        loop = asyncio.get_running_loop()
        items = [_Item(v, loop.create_future()) for v in values]
        for item in items:
            self._queue.put_nowait(item)
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        except asyncio.CancelledError:
            for item in items:
                item.future.cancel()  # the loop skips cancelled items it has not run yet
            raise

    async def _gather(self) -> list[_Item[In, Out]]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            getter = asyncio.ensure_future(self._queue.get())
            await asyncio.wait({getter}, timeout=remaining)
            if not getter.done():
                # Cancelling a pending Queue.get leaves its item in the queue.
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
            if getter.done() and not getter.cancelled():
                batch.append(getter.result())
            else:
                break
        return [item for item in batch if not item.future.done()]

    async def _loop(self) -> None:
        while True:
            batch = await self._gather()
            if not batch:
                continue
            self.batch_sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(self.run_batch, [i.value for i in batch])
            except Exception as exc:  # one bad batch fails its own requests, not the loop
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
