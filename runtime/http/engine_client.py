"""The HTTP/1.1 client the gateway uses to reach its engines on loopback.

Purpose-built: on the relay path the upstream client was the largest single cost (issue 11's
profile of aiohttp: a request and a response object with header multidicts per call, URL
parsing, a task to write each body). Engines are local HTTP/1.1 servers, so what is needed is
small: a keep-alive pool per engine, one write per request, httptools to parse the reply,
the body handed over chunk by chunk with back-pressure, and connect and read timeouts.

Closing a response that is not complete closes its connection: that is how an engine such as
vLLM learns that the client went away and aborts the request.

Engines chutebox starts are reached on a Unix socket in its private folder (`unix:/path`) or
on loopback (`http://host:port`); engines elsewhere (a chute's `url`) at `https://host:port`,
their certificate verified against the system's trust store (OpenSSL's default paths, which
`SSL_CERT_FILE` may name) or the chute's own CA file, or at `http://host:port` on a private
network. Every framing HTTP/1.1 allows is read: Content-Length,
chunked, and a body delimited by the engine closing the connection (HTTP/1.0, or neither
header). A refused or reset connection before any reply byte raises `EngineDownError`, so the
caller can mark the replica down and send the request elsewhere. Each engine gets at most
`max_connections` sockets; a burst past that waits for one to come free.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from time import monotonic
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from runtime.errors import (
    EngineDownError,
    EngineLostError,
    InvalidRequestError,
    UpstreamError,
)

# Past this much unread body, stop reading from the engine until the client catches up.
HIGH_WATER = 1 << 20
# uvicorn (vLLM, SGLang, our workers) drops idle keep-alive connections after 5 s; reusing one
# at that moment would race the close, so older ones are not reused.
IDLE_REUSE = 4.0
# Statuses whose replies never have a body (RFC 9112 §6.3), whatever their headers say.
NO_BODY = frozenset({204, 304})


@dataclass(frozen=True)
class Endpoint:
    """Where a running engine listens, the per-boot key it expects, and for an engine reached
    over TLS, the CA certificates that sign its certificate (None: the system's trust store,
    or the file SSL_CERT_FILE names).

    `address` is `http://host:port` or `https://host:port`, or `unix:/path/to/socket` for an
    engine on a Unix socket.
    """

    address: str
    api_key: str
    ca_file: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class UpstreamBroken(Exception):
    """The engine closed the connection, sent bad HTTP, or went silent mid-reply."""


class EngineClosed(UpstreamBroken):
    """The engine closed the connection."""


@dataclass(frozen=True)
class UpstreamTimeouts:
    """Seconds to connect to an engine, the longest silence mid-reply (None: no limit), and
    the most connections open to one engine at a time."""

    connect: float = 10.0
    read: float | None = 900.0
    max_connections: int = 512


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
                yield self._take()
            elif self._error is not None:
                raise self._error
            elif self._done:
                return
            else:
                await self._wait()

    async def read(self) -> bytes:
        whole = self.complete()
        if whole is not None:
            return whole
        return b"".join([chunk async for chunk in self.iter_chunks()])

    def complete(self) -> bytes | None:
        """The whole body when all of it is here (usual for a short reply), else None; read
        without a coroutine."""
        if self._done and self._error is None:
            return self._take() if self._chunks else b""
        return None

    def _take(self) -> bytes:
        """What arrived so far, as one piece; reading from the engine resumes."""
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._connection.resume()
        return data

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

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.headers_ready: asyncio.Future[None] | None = None
        self.received = False
        self.keep_alive = True
        # The reply's body ends when the engine closes the connection (no length, not chunked).
        self.until_close = False
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
        self.pool.forget(self)
        response = self.response
        if response is not None and self.until_close and response.status and exc is None:
            response._finish()  # a close-delimited body is complete when the engine closes
        self._broken(EngineClosed(f"the engine closed the connection ({exc or 'EOF'})"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.response.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        assert self.response is not None
        response = self.response
        response.status = self.parser.get_status_code()
        headers = response.headers
        self.until_close = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and response.status not in NO_BODY
            and response.status >= 200
        )
        if self.until_close:
            self.keep_alive = False
        if self.headers_ready is not None and not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        assert self.response is not None
        self.keep_alive = self.keep_alive and self.parser.should_keep_alive()
        self.response._finish()

    # used by the pool and the response
    def _broken(self, error: Exception) -> None:
        if self.headers_ready is not None and not self.headers_ready.done():
            self.headers_ready.set_exception(error)
        if self.response is not None:
            self.response._fail(error)

    def start(self, response: UpstreamResponse, request: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.response, self.received, self.until_close = response, False, False
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
            self.pool.put(self)
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
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """The connections to one engine: idle ones to reuse, and at most `limit` open at once.

    A request past the limit waits, first come first served, until a connection is returned
    or closed: a burst cannot open thousands of sockets to one engine.
    """

    def __init__(self, address: str, limit: int, tls: ssl.SSLContext | None = None) -> None:
        self.address = address
        # (host or socket path, port or None): parsed once, refusing a bad address early.
        self.target = _parse(address)[:2]
        self.tls = tls
        self.limit = limit
        self.idle: list[_Connection] = []
        self.open: set[_Connection] = set()
        self.opening = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def put(self, connection: _Connection) -> None:
        self.idle.append(connection)
        self._wake()

    def forget(self, connection: _Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        if connection in self.open:
            self.open.discard(connection)
            self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def take_idle(self) -> _Connection | None:
        now = monotonic()
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_REUSE:
                return connection
            connection.close()
        return None

    def has_room(self) -> bool:
        return len(self.open) + self.opening < self.limit

    async def wait_for_room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # pass the turn on: this one is not taking it
            raise

    def close(self) -> None:
        for connection in list(self.open):
            connection.close()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.cancel()


class Upstream:
    """Keep-alive pools to every engine; created and closed in the app's lifespan."""

    def __init__(self, timeouts: UpstreamTimeouts) -> None:
        self.timeouts = timeouts
        # By address and CA file: a connection verified against one chute's CA is never
        # lent to a chute that trusts another.
        self._pools: dict[tuple[str, str | None], _Pool] = {}
        self._heads: dict[Endpoint, bytes] = {}
        self._tls: dict[str | None, ssl.SSLContext] = {}

    @classmethod
    def create(cls, timeouts: UpstreamTimeouts | None = None) -> Upstream:
        return cls(timeouts or UpstreamTimeouts())

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def open_connections(self, address: str) -> int:
        return sum(len(pool.open) for (at, _), pool in self._pools.items() if at == address)

    async def send(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamResponse:
        """Send a request and wait for the reply's headers; the caller reads and releases it.

        EngineDownError when the engine refused the connection, or closed or reset it before
        a byte of the reply: nothing was answered, so the request may go elsewhere.
        """
        request = self._request(endpoint, method, path, body, headers)
        pool = self._pool(endpoint)
        connection, reused = await self._acquire(pool)
        try:
            return await self._exchange(connection, request)
        except EngineClosed as exc:
            if connection.received:
                raise EngineLostError(f"the engine broke off its reply: {exc}") from exc
            if not reused:
                raise EngineDownError(
                    f"the engine dropped the connection unanswered: {exc}"
                ) from exc
        except UpstreamBroken as exc:
            raise UpstreamError(f"the engine did not answer: {exc}") from exc
        # A pooled connection the engine had just closed: once more, on a new one.
        connection, _ = await self._acquire(pool, fresh=True)
        try:
            return await self._exchange(connection, request)
        except EngineClosed as exc:
            if connection.received:
                raise EngineLostError(f"the engine broke off its reply: {exc}") from exc
            raise EngineDownError(f"the engine dropped the connection unanswered: {exc}") from exc
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
        lines = [f"{method} {path} HTTP/1.1\r\n".encode(), self._head(endpoint)]
        if headers:
            extra = dict(headers)
            if body is not None:
                extra.setdefault("Content-Type", "application/json")
                extra["Content-Length"] = str(len(body))
            lines += [_header_line(name, value) for name, value in extra.items()]
        elif body is not None:  # the relay's case: two headers of our own, nothing to check
            lines.append(b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        if body:
            lines.append(body)
        return b"".join(lines)

    def _head(self, endpoint: Endpoint) -> bytes:
        """Host and the engine's own headers (its key), encoded once per endpoint."""
        head = self._heads.get(endpoint)
        if head is None:
            lines = [b"Host: " + _parse(endpoint.address)[2] + b"\r\n"]
            lines += [_header_line(n, v) for n, v in endpoint.headers().items()]
            head = self._heads[endpoint] = b"".join(lines)
        return head

    def _pool(self, endpoint: Endpoint) -> _Pool:
        key = (endpoint.address, endpoint.ca_file)
        pool = self._pools.get(key)
        if pool is None:
            tls = self._context(endpoint.ca_file) if _parse(endpoint.address)[3] else None
            pool = self._pools[key] = _Pool(endpoint.address, self.timeouts.max_connections, tls)
        return pool

    def _context(self, ca_file: str | None) -> ssl.SSLContext:
        """A client context verifying certificates and host names, one per CA file."""
        context = self._tls.get(ca_file)
        if context is None:
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except OSError as exc:  # the file is gone or not certificates
                raise UpstreamError(f"CA file {ca_file}: {exc.strerror or exc}") from exc
            self._tls[ca_file] = context
        return context

    async def _acquire(self, pool: _Pool, fresh: bool = False) -> tuple[_Connection, bool]:
        while True:
            if not fresh:
                connection = pool.take_idle()
                if connection is not None:
                    return connection, True
            if pool.has_room():
                return await self._connect(pool), False
            await pool.wait_for_room()

    async def _connect(self, pool: _Pool) -> _Connection:
        host_or_path, port = pool.target
        loop = asyncio.get_running_loop()
        pool.opening += 1
        try:
            if port is None:
                opening = loop.create_unix_connection(lambda: _Connection(pool), host_or_path)
            else:
                opening = loop.create_connection(lambda: _Connection(pool), host_or_path, port,
                                                 ssl=pool.tls)  # fmt: skip
            _, protocol = await asyncio.wait_for(opening, self.timeouts.connect)
        except TimeoutError as exc:
            raise UpstreamError(
                f"the engine did not accept a connection in {self.timeouts.connect:g}s"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            # Not the engine the chute names (or its CA is not the one given): never sent to.
            raise EngineDownError(
                f"the engine's certificate was refused ({exc.verify_message})"
            ) from exc
        except ssl.SSLError as exc:
            raise EngineDownError(f"no TLS session with the engine ({exc.reason})") from exc
        except OSError as exc:
            # Refused, reset, or the socket file gone: the engine is not there.
            reason = exc.strerror or type(exc).__name__
            raise EngineDownError(f"the engine refused the connection ({reason})") from exc
        finally:
            pool.opening -= 1
        pool.open.add(protocol)
        return protocol


_UNSAFE = re.compile(r"[\r\n\x00]")


def _header_line(name: str, value: str) -> bytes:
    if _UNSAFE.search(name) or _UNSAFE.search(value):
        # A CR or LF would let a header value end the header and start another.
        raise InvalidRequestError(
            f"header {name!r}: a CR, LF or NUL character is not allowed in a header", param=name
        )
    return f"{name}: {value}\r\n".encode("latin-1")


def _parse(address: str) -> tuple[str, int | None, bytes, bool]:
    """(host or socket path, port or None for a socket, Host header, over TLS) of an engine
    address."""
    if address.startswith("unix:"):
        path = address.removeprefix("unix:")
        if not path:
            raise UpstreamError(f"no socket path in engine address {address!r}")
        return path, None, b"localhost", False
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamError(f"engines are reached over http, https or unix:, not {address}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    return parts.hostname, port, f"{parts.hostname}:{port}".encode(), tls


def _expire(ready: asyncio.Future[None], seconds: float) -> None:
    if not ready.done():
        ready.set_exception(UpstreamBroken(f"the engine was silent for {seconds:g}s"))
