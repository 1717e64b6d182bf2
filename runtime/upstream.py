"""The HTTP/1.1 client the gateway uses to reach its engines on loopback.

Purpose-built: on the relay path the upstream client was the largest single cost (issue 11's
profile of aiohttp: a request and a response object with header multidicts per call, URL
parsing, a task to write each body). Engines are local HTTP/1.1 servers, so what is needed is
small: a keep-alive pool per engine, one write per request, httptools to parse the reply,
the body handed over chunk by chunk with back-pressure, and connect and read timeouts.

Closing a response that is not complete closes its connection: that is how an engine such as
vLLM learns that the client went away and aborts the request.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from time import monotonic
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from runtime.chutes import Endpoint
from runtime.errors import UpstreamError

# Past this much unread body, stop reading from the engine until the client catches up.
HIGH_WATER = 1 << 20
# uvicorn (vLLM, SGLang, our workers) drops idle keep-alive connections after 5 s; reusing one
# at that moment would race the close, so older ones are not reused.
IDLE_REUSE = 4.0


class UpstreamBroken(Exception):
    """The engine closed the connection, sent bad HTTP, or went silent mid-reply."""


class EngineClosed(UpstreamBroken):
    """The engine closed the connection."""


@dataclass(frozen=True)
class UpstreamTimeouts:
    """Seconds to connect to an engine, and the longest silence mid-reply (None: no limit)."""

    connect: float = 10.0
    read: float | None = 900.0


class UpstreamResponse:
    """One engine reply: status and headers at once, the body as it arrives."""

    def __init__(self, connection: _Connection, read_timeout: float | None) -> None:
        self._connection = connection
        self._read_timeout = read_timeout
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    # Fed by the connection's parser callbacks.
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._connection.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        if not self._done and self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = None
        if self._read_timeout is not None:
            timer = loop.call_later(self._read_timeout, self._timed_out)
        try:
            await self._waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _timed_out(self) -> None:
        self._fail(UpstreamBroken(f"the engine was silent for {self._read_timeout:g}s"))
        self._connection.close()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; UpstreamBroken if the engine broke it off."""
        while True:
            if self._chunks:
                # Whatever arrived since the last turn goes out as one piece: a relay that
                # falls behind catches up in fewer, larger writes.
                chunks = self._chunks
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                self._connection.resume()
                yield data
            elif self._error is not None:
                raise self._error
            elif self._done:
                return
            else:
                await self._wait()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def json(self) -> Any:
        return json.loads(await self.read())

    def release(self) -> None:
        """Done with it: a complete reply's connection goes back to the pool."""
        self._connection.finished(reusable=self._done and self._error is None)

    def close(self) -> None:
        """Drop the connection, complete or not (an engine reads this as an abort)."""
        self._connection.finished(reusable=False)

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an engine, parsing replies with httptools."""

    def __init__(self, pool: list[_Connection], live: set[_Connection]) -> None:
        self.pool = pool
        self.live = live
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.headers_ready: asyncio.Future[None] | None = None
        self.received = False
        self.keep_alive = True
        self.closed = False
        self.paused = False
        self.idle_since = monotonic()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # nothing was asked: the connection is not trustworthy
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._broken(UpstreamBroken(f"the engine sent malformed HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.live.discard(self)
        if self in self.pool:
            self.pool.remove(self)
        self._broken(EngineClosed("the engine closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.response.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        assert self.response is not None
        self.response.status = self.parser.get_status_code()
        if self.headers_ready is not None and not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        assert self.response is not None
        self.keep_alive = self.parser.should_keep_alive()
        self.response._finish()

    # used by the pool and the response
    def _broken(self, error: Exception) -> None:
        if self.headers_ready is not None and not self.headers_ready.done():
            self.headers_ready.set_exception(error)
        if self.response is not None:
            self.response._fail(error)

    def start(self, response: UpstreamResponse, request: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.response, self.received = response, False
        self.headers_ready = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.headers_ready

    def finished(self, reusable: bool) -> None:
        if self.response is None:
            return
        self.response, self.headers_ready = None, None
        self.resume()
        if reusable and self.keep_alive and not self.closed:
            self.idle_since = monotonic()
            self.pool.append(self)
        else:
            self.close()

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self in self.pool:
            self.pool.remove(self)
        if self.transport is not None:
            self.transport.close()


class Upstream:
    """Keep-alive pools to every engine; created and closed in the app's lifespan."""

    def __init__(self, timeouts: UpstreamTimeouts) -> None:
        self.timeouts = timeouts
        self._pools: dict[str, list[_Connection]] = {}
        self._targets: dict[str, tuple[str, int, bytes]] = {}
        self._all: set[_Connection] = set()

    @classmethod
    def create(cls, timeouts: UpstreamTimeouts | None = None) -> Upstream:
        return cls(timeouts or UpstreamTimeouts())

    async def close(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._all.clear()
        self._pools.clear()

    async def send(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamResponse:
        """Send a request and wait for the reply's headers; the caller reads and releases it."""
        request = self._request(endpoint, method, path, body, headers)
        connection, reused = await self._acquire(endpoint.base_url)
        try:
            return await self._exchange(connection, request)
        except UpstreamBroken as exc:
            if not (reused and isinstance(exc, EngineClosed)) or connection.received:
                raise UpstreamError(f"the engine did not answer: {exc}") from exc
        # A pooled connection the engine had just closed: once more, on a new one.
        connection, _ = await self._acquire(endpoint.base_url, fresh=True)
        try:
            return await self._exchange(connection, request)
        except UpstreamBroken as exc:
            raise UpstreamError(f"the engine did not answer: {exc}") from exc

    async def _exchange(self, connection: _Connection, request: bytes) -> UpstreamResponse:
        response = UpstreamResponse(connection, self.timeouts.read)
        ready = connection.start(response, request)
        timer = None
        if self.timeouts.read is not None:
            timer = asyncio.get_running_loop().call_later(
                self.timeouts.read, _expire, ready, self.timeouts.read
            )
        try:
            await ready
        except BaseException:
            # Cancelled (the client left), timed out or broken: the engine must see a close.
            connection.finished(reusable=False)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return response

    def _request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> bytes:
        host = self._target(endpoint.base_url)[2]
        lines = [f"{method} {path} HTTP/1.1\r\nHost: ".encode() + host + b"\r\n"]
        merged = {**endpoint.headers(), **(headers or {})}
        if body is not None:
            merged.setdefault("Content-Type", "application/json")
            merged["Content-Length"] = str(len(body))
        lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in merged.items()]
        lines.append(b"\r\n")
        if body:
            lines.append(body)
        return b"".join(lines)

    def _target(self, base_url: str) -> tuple[str, int, bytes]:
        target = self._targets.get(base_url)
        if target is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or not parts.hostname:
                raise UpstreamError(f"engines are reached over plain http, not {base_url}")
            port = parts.port or 80
            target = (parts.hostname, port, f"{parts.hostname}:{port}".encode())
            self._targets[base_url] = target
        return target

    async def _acquire(self, base_url: str, fresh: bool = False) -> tuple[_Connection, bool]:
        pool = self._pools.setdefault(base_url, [])
        now = monotonic()
        while pool and not fresh:
            connection = pool.pop()
            if not connection.closed and now - connection.idle_since < IDLE_REUSE:
                return connection, True
            connection.close()
        host, port, _ = self._target(base_url)
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(pool, self._all), host, port),
                self.timeouts.connect,
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"the engine did not answer: {type(exc).__name__}") from exc
        self._all.add(protocol)
        return protocol, False


def _expire(ready: asyncio.Future[None], seconds: float) -> None:
    if not ready.done():
        ready.set_exception(UpstreamBroken(f"the engine was silent for {seconds:g}s"))
