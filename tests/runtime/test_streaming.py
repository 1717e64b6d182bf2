"""Watching for the client leaving while a relay runs: cancelled work, and no watcher for
work that ends first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from runtime.streaming import ClientDisconnected, run_until_disconnect


class Client:
    """An ASGI receive: the body first, then nothing until `leave()`, then a disconnect."""

    def __init__(self) -> None:
        self.calls = 0
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, object]:
        self.calls += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self.gone.set()


def test_work_that_ends_before_the_delay_never_starts_a_watcher() -> None:
    async def scenario() -> tuple[str, int]:
        client = Client()
        result = await run_until_disconnect(client.receive, asyncio.sleep(0.01, "done"), 5.0)
        await asyncio.sleep(0)
        return result, client.calls

    assert asyncio.run(scenario()) == ("done", 0)


@pytest.mark.parametrize("after", [0.0, 0.05])
def test_a_client_leaving_cancels_the_work(after: float) -> None:
    async def scenario() -> list[str]:
        client = Client()
        seen: list[str] = []

        async def work() -> None:
            try:
                await asyncio.sleep(30)
            finally:
                seen.append("work cleaned up")

        # Gone before the work started: seen when the watcher starts, `after` seconds on.
        client.leave()
        with pytest.raises(ClientDisconnected):
            await asyncio.wait_for(run_until_disconnect(client.receive, work(), after), 10)
        seen.append(f"receive called {client.calls}x")
        return seen

    assert asyncio.run(scenario()) == ["work cleaned up", "receive called 1x"]


def test_a_cancel_from_outside_is_not_taken_for_a_disconnect() -> None:
    async def scenario() -> None:
        client = Client()
        task = asyncio.ensure_future(run_until_disconnect(client.receive, asyncio.sleep(30), 0.01))
        await asyncio.sleep(0.05)  # the watcher is waiting by now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_where_the_server_tells_of_a_client_leaving_nothing_reads_receive() -> None:
    async def scenario() -> list[str]:
        client = Client()
        seen: list[str] = []
        callbacks: list[Callable[[], None] | None] = []

        async def work() -> None:
            try:
                await asyncio.sleep(30)
            finally:
                seen.append("work cleaned up")

        task = asyncio.ensure_future(
            run_until_disconnect(client.receive, work(), 0.0, callbacks.append)
        )
        await asyncio.sleep(0.01)
        on_lost = callbacks[0]
        assert on_lost is not None
        on_lost()  # the server's connection_lost
        with pytest.raises(ClientDisconnected):
            await task
        seen.append(f"receive called {client.calls}x, watch cleared: {callbacks[-1] is None}")
        return seen

    assert asyncio.run(scenario()) == ["work cleaned up", "receive called 0x, watch cleared: True"]
