"""A TCP proxy in front of an engine that drops connections on demand, as an engine's death
looks from the gateway: the connection closes after some of the reply's SSE events.

`cuts` (shared by the proxies of several replicas, if need be) plans the next requests: each
entry is consumed by one request and drops its connection after that many events (`\\n\\n`)
of the reply were passed on. The engine behind it lives on, so one engine can stand behind
two "replicas" whose connections die.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.support.servers import free_port


class CuttingProxy:
    def __init__(self, upstream_port: int, cuts: list[int]) -> None:
        self.upstream_port = upstream_port
        self.cuts = cuts
        self.port = free_port()
        self.cut = 0  # connections dropped so far

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        # The cut of the request in flight on this connection, and its events passed on.
        plan: list[int | None] = [None]
        passed = [0]

        async def requests() -> None:
            while data := await reader.read(65536):
                if data.startswith((b"POST ", b"GET ")):
                    plan[0] = self.cuts.pop(0) if self.cuts else None
                    passed[0] = 0
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def replies() -> None:
            while data := await up_reader.read(65536):
                limit = plan[0]
                if limit is not None:
                    at = -1
                    while passed[0] < limit:
                        at = data.find(b"\n\n", at + 1)
                        if at < 0:
                            break
                        passed[0] += 1
                    if passed[0] >= limit:
                        writer.write(data[: at + 2] if limit else b"")
                        await writer.drain()
                        self.cut += 1
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            with contextlib.suppress(ConnectionError):
                await asyncio.gather(requests(), replies())
        finally:
            writer.transport.abort()
            up_writer.transport.abort()

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        stop = asyncio.Event()

        async def main() -> None:
            server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            started.set()
            await stop.wait()
            server.close()
            current = asyncio.current_task()
            for task in asyncio.all_tasks():  # the connections still open
                if task is not current:
                    task.cancel()
            await server.wait_closed()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        assert started.wait(10)
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()
