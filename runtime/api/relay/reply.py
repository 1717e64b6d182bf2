"""Relaying an engine's reply: whole bodies and SSE streams, written once.

`EngineCall` is an ASGI response. It sends the request upstream and relays the answer as it
arrives, never buffering a stream whole. A client that goes away cancels the relay, and the
upstream connection is closed rather than returned to the pool — which is how vLLM learns to
abort the request. Errors before the first byte go to the error handler (one envelope); after
it, they become a `data: {"error": …}` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any, NoReturn, TypeVar

from starlette.types import Receive, Scope, Send

from runtime.api.record import RequestRecord
from runtime.api.relay.adapters import hold_adapter
from runtime.api.relay.migration import Migration, MigrationPlan
from runtime.errors import (
    ChuteboxError,
    Dialect,
    EngineDownError,
    EngineLostError,
    GatewayStoppingError,
    UpstreamError,
    from_engine_body,
)
from runtime.fleet.backend import AbortCall
from runtime.fleet.chutes import ChuteSet, Lease
from runtime.http.engine_client import EngineClosed, Upstream, UpstreamBroken, UpstreamResponse
from runtime.observability.metrics import Metrics, StreamMeters
from runtime.observability.tracing import response_id
from runtime.observability.usage import Usage, find_usage

T = TypeVar("T")
log = logging.getLogger("chutebox.app")
SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
# Engine reply headers that mean something to the client (the image route's file name).
RELAYED_HEADERS = ("content-disposition",)
KEEPALIVE = b": keep-alive\n\n"
# How long a relay runs before a task starts watching for the client leaving: long enough
# that quick replies are done first, even on a busy gateway where they wait tens of
# milliseconds for the event loop; short against what an engine saves by aborting (a few
# tokens' time).
WATCH_AFTER = 0.1


class ClientDisconnected(Exception):
    """The client went away before the reply was complete."""


async def run_until_disconnect(receive: Receive, work: Awaitable[T], after: float = 0.0) -> T:
    """Run `work` in this task; if the client disconnects first, cancel it (its cleanup
    runs, closing the engine connection) and raise ClientDisconnected.

    A watcher task reads `receive` and cancels this one when the client leaves. With
    `after`, the watcher starts only once the work has run that long: a reply done sooner
    needs no second task, and a client that left early is still seen, `after` seconds late
    at most.
    """
    current = asyncio.current_task()
    assert current is not None
    disconnected = False
    watcher: asyncio.Future[None] | None = None

    async def read_until_gone() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        current.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(read_until_gone())

    timer = None
    if after > 0:
        timer = asyncio.get_running_loop().call_later(after, start_watching)
    else:
        start_watching()
    try:
        return await work
    except asyncio.CancelledError:
        if not disconnected:
            raise
        current.uncancel()
        raise ClientDisconnected() from None
    finally:
        if timer is not None:
            timer.cancel()
        if watcher is not None:
            watcher.cancel()


class EngineCall:
    """Forward one request to an engine and relay the reply to the client.

    The request goes to the lease's replica; if that one refuses it unanswered, the lease
    moves to another ready replica and it goes there (503 when none is left). The lease is
    released when the call ends (then `on_done` runs), and the reply carries its chute's
    admission headers. What it learns on the way goes into the request's record for the
    access log and `Server-Timing` (`engine_wait`, `usage`, `disconnected`) and into
    `metrics`. `on_reply` sees the start of a successful reply (the whole body, or the first
    chunk of a stream).
    """

    def __init__(
        self,
        upstream: Upstream,
        lease: Lease,
        path: str,
        body: bytes | None,
        *,
        shutdown: ChuteSet,
        record: RequestRecord,
        method: str = "POST",
        metrics: Metrics | None = None,
        keepalive: float = 0.0,
        abort: AbortCall | None = None,
        on_reply: Callable[[bytes], None] | None = None,
        count_usage: bool = True,
        on_done: Callable[[], None] | None = None,
        migration: MigrationPlan | None = None,
        adapter: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.lease = lease
        self.path = path
        self.body = body
        self.shutdown = shutdown
        # The chute (for metrics) and the error dialect are the request's, from its record.
        self.record = record
        self.chute = record.chute
        self.method = method
        self.metrics = metrics
        self.keepalive = keepalive
        self.abort = abort
        self.on_reply = on_reply
        self.count_usage = count_usage
        self.on_done = on_done
        self.plan = migration
        # The LoRA adapter the request names: a replica it moves to must hold it too.
        self.adapter = adapter
        self._migration: Migration | None = None
        # What the call learns as it runs.
        self._started = False
        self._stream: StreamRelay | None = None

    @property
    def dialect(self) -> Dialect:
        return self.record.dialect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = self.record
        task = asyncio.current_task()
        assert task is not None
        self.shutdown.relays.add(task)
        try:
            if self.shutdown.stopping:
                raise GatewayStoppingError()
            await run_until_disconnect(receive, self._relay(send, record), WATCH_AFTER)
        except ClientDisconnected:
            record.disconnected = True
            if self.metrics is not None:
                self.metrics.disconnected(self.chute, self.path)
            if record.usage is None and self._migration is not None:
                # What a stream generated before its client left, from its token ids.
                self._count(record, self._migration.relayed())
            if self.abort is not None:
                await self._send_abort(self.abort)
        except asyncio.CancelledError:
            if not self.shutdown.stopping:
                raise
            task.uncancel()  # the gateway stops now: end this reply cleanly, not by a traceback
            await self._stopped(send)
        finally:
            self.shutdown.relays.discard(task)
            self._stream = None  # its first-event callback holds this call: no cycle left
            record.replica = self.lease.replica.index
            self.lease.release()
            if self.on_done is not None:
                self.on_done()

    async def _stopped(self, send: Send) -> None:
        if not self._started:
            raise GatewayStoppingError()
        if self._stream is not None:
            await self._stream.fail(self.dialect.sse_event(GatewayStoppingError()))
            await self._stream.end()

    async def _send_abort(self, call: AbortCall) -> None:
        """Tell an engine that does not notice closed connections to stop the request."""
        endpoint = self.lease.endpoint
        try:
            body = json.dumps(dict(call.body)).encode()
            response = await asyncio.wait_for(
                self.upstream.send(endpoint, "POST", call.path, body), timeout=5
            )
            response.release()
        except Exception as exc:  # the engine may be gone; the request dies with it then
            log.warning("abort %s on %s failed: %s", call.body, endpoint.address, exc)

    def _headers(self, content_type: str, extra: list[tuple[bytes, bytes]]) -> list[Any]:
        headers = [(b"content-type", content_type.encode()), *extra]
        headers += self.lease.chute.admission.raw_headers()
        return headers

    async def _relay(self, send: Send, record: RequestRecord) -> None:
        asked = perf_counter()
        response = await self._send(self.path, self.body)
        reusable = False
        try:
            if response.status >= 400:
                await _refuse_errors(response)
            content_type = response.headers.get("content-type", "application/json")
            if content_type.startswith("text/event-stream"):
                record.engine_wait = perf_counter() - asked
                self._started = True
                headers = self._headers(content_type, SSE_HEADERS)
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                meters = self.metrics.stream_meters(self.chute) if self.metrics else None
                mover = self._mover()
                source = (
                    response.iter_chunks()
                    if mover is None
                    else mover.events(response, self.body or b"", self._send)
                )
                relay = StreamRelay(source, send, meters, record.started, self.keepalive,
                                    self.dialect, self._first_event(record))  # fmt: skip
                self._stream = relay
                # A stream moved elsewhere left this connection broken.
                reusable = await relay.run() and not self._moved
                self._count(record, find_usage(relay.tail))
            else:
                complete = response.complete()
                if complete is not None:
                    body = complete
                else:
                    response, body = await self._whole(response)
                record.engine_wait = perf_counter() - asked
                extra = [(b"content-length", b"%d" % len(body))]
                for name in RELAYED_HEADERS:
                    if name in response.headers:
                        extra.append((name.encode(), response.headers[name].encode()))
                self._started = True
                headers = self._headers(content_type, extra)
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                reusable = True
                if content_type.startswith("application/json"):
                    self._count(record, find_usage(body))
                    if record.trace_headers is not None:
                        record.response_id = response_id(body)
                    if self.on_reply is not None:
                        self.on_reply(body)
        finally:
            if reusable:
                response.release()
            else:
                response.close()

    @property
    def _moved(self) -> bool:
        return self._migration is not None and self._migration.moves > 0

    def _mover(self) -> Migration | None:
        """The request's migration, made when first needed (most requests never move)."""
        if self._migration is None and self.plan is not None:
            # No callback of this call's own in it: a reference cycle would keep every call
            # (its record, lease and reply) alive until the cycle collector ran.
            self._migration = Migration(self.plan, self.lease, self.record, self.path, self.metrics)
        return self._migration

    async def _send(self, path: str, body: bytes | None) -> UpstreamResponse:
        """The engine's reply headers. A replica that refused the request unanswered is
        marked down and another ready one asked (`Lease.fail_over`); one that took it and
        died before its reply's headers is left as the migration says."""
        endpoint = self.lease.endpoint
        while True:
            if self.adapter is not None and self.lease.adapter is None:  # it moved
                await hold_adapter(self.upstream, self.lease, self.lease.chute, self.adapter)
            try:
                return await self.upstream.send(
                    endpoint, self.method, path, body, self.record.trace_headers
                )
            except EngineDownError as exc:
                endpoint = self.lease.fail_over(exc.message)
            except EngineLostError as exc:
                mover = self._mover()
                if mover is None or not mover.may_move():
                    raise
                await mover.move(exc.message)
                endpoint = self.lease.endpoint

    async def _whole(self, response: UpstreamResponse) -> tuple[UpstreamResponse, bytes]:
        """A whole reply's body still arriving; asked again elsewhere when its engine dies
        before the end."""
        while True:
            try:
                return response, await response.read()
            except UpstreamBroken as exc:
                response.close()
                migration = self._mover()
                moves = isinstance(exc, EngineClosed) and migration is not None
                if migration is None or not moves or not migration.may_move():
                    raise UpstreamError(f"the engine broke off its reply: {exc}") from exc
                await migration.move(f"the engine broke off its reply: {exc}")
            response = await self._send(self.path, self.body)
            if response.status >= 400:
                await _refuse_errors(response)
            complete = response.complete()
            if complete is not None:
                return response, complete

    def _first_event(self, record: RequestRecord) -> Callable[[bytes], None]:
        def first(chunk: bytes) -> None:
            record.ttft = perf_counter() - record.started
            self.lease.started()
            if record.trace_headers is not None:
                record.response_id = response_id(chunk)
            if self.on_reply is not None:
                self.on_reply(chunk)

        return first

    def _count(self, record: RequestRecord, usage: Usage | None) -> None:
        if usage is None or not self.count_usage:
            return
        record.usage = usage
        speed = self.lease.chute.speed
        if self._stream is not None:  # a stream: its prompt took until its first event
            seconds = perf_counter() - record.started
            speed.observe(usage.prompt_tokens, usage.completion_tokens, seconds, record.ttft)
        elif record.engine_wait is not None:
            speed.observe(usage.prompt_tokens, usage.completion_tokens, record.engine_wait, None)
        if self.metrics is not None:
            self.metrics.tokens(self.chute, usage.prompt_tokens, usage.completion_tokens)


async def send_on_lease(
    upstream: Upstream,
    lease: Lease,
    method: str,
    path: str,
    body: bytes | None,
    headers: Mapping[str, str] | None = None,
) -> UpstreamResponse:
    """Send a request to the lease's replica; while a replica refuses it unanswered, mark that
    one down and send it to another ready one (503 when none is left). (An engine call does
    this in `EngineCall._send`, with the migration beside it.)"""
    endpoint = lease.endpoint
    while True:
        try:
            return await upstream.send(endpoint, method, path, body, headers)
        except EngineDownError as exc:
            endpoint = lease.fail_over(exc.message)


async def _refuse_errors(response: UpstreamResponse) -> NoReturn:
    """An engine's error reply becomes the client's (its connection read to the end)."""
    body = await _read(response)
    response.release()
    raise from_engine_body(response.status, body)


async def _read(response: UpstreamResponse) -> bytes:
    try:
        return await response.read()
    except UpstreamBroken as exc:
        raise UpstreamError(f"the engine broke off its reply: {exc}") from exc


class StreamRelay:
    """Relays SSE bytes as they arrive from `source`, timing them, with keep-alive comments
    in silences.

    A keep-alive goes out only between events, and never while a chunk is being sent: both
    writers hold `lock` around `send`. The silences are watched by a timer, not a task per
    stream: a task sleeping beside every stream cost two task steps and its creation on the
    stream's first byte, for a comment most streams never send; a task is made only to send
    one. `tail` keeps the last two chunks, where the usage event of a stream is.
    """

    def __init__(
        self,
        source: AsyncIterator[bytes],
        send: Send,
        meters: StreamMeters | None,
        started: float,
        keepalive: float,
        dialect: Dialect = Dialect.OPENAI,
        on_first: Callable[[bytes], None] | None = None,
    ) -> None:
        self.source = source
        self.dialect = dialect
        self.on_first = on_first
        self.send = send
        self.meters = meters
        self.started = started
        self.keepalive = keepalive
        self.lock = asyncio.Lock() if keepalive > 0 else None
        self.last = self.written = perf_counter()
        self.boundary = True
        self.tail = b""
        self._timer: asyncio.TimerHandle | None = None
        self._ping: asyncio.Task[None] | None = None

    async def run(self) -> bool:
        """Relay to the end; False when the engine broke off the stream."""
        if self.keepalive > 0:
            self._timer = asyncio.get_running_loop().call_later(self.keepalive, self._due)
        try:
            return await self._pump()
        finally:  # a comment being sent is cancelled before it can set the timer again
            if self._timer is not None:
                self._timer.cancel()
            if self._ping is not None:
                self._ping.cancel()
            close = getattr(self.source, "aclose", None)
            if close is not None:  # a generator left at a `yield` (the client left) ends now
                await close()

    async def _pump(self) -> bool:
        complete, previous, chunk = True, b"", b""
        meters, first = self.meters, True
        try:
            async for chunk in self.source:
                now = perf_counter()
                if first and self.on_first is not None:
                    self.on_first(chunk)
                if meters is not None:
                    if first:
                        meters.ttft.observe(now - self.started)
                    else:
                        meters.itl.observe(now - self.last)
                first, self.last, self.written, previous = False, now, now, self.tail
                self.tail, self.boundary = chunk, chunk.endswith(b"\n\n")
                await self._write(chunk)
        except (UpstreamBroken, ChuteboxError) as exc:
            # A request moved off a dead engine may find no replica to go on on (503).
            error = (
                exc
                if isinstance(exc, ChuteboxError)
                else UpstreamError(f"the engine broke off the stream: {exc}")
            )
            await self.fail(self.dialect.sse_event(error))
            complete = False
        self.tail = previous + self.tail
        await self.end()
        return complete

    async def fail(self, event: bytes) -> None:
        """Send an error `event` of its own, finishing any half-sent event first."""
        prefix = b"" if self.boundary else b"\n\n"
        await self._write(prefix + event)

    async def end(self) -> None:
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, body: bytes) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": True}
        if self.lock is None:
            await self.send(message)
            return
        async with self.lock:
            await self.send(message)

    def _due(self) -> None:
        """The timer: `keepalive` seconds may have passed since the last write. A comment is
        sent if so, else the timer is set for when they will have."""
        idle = perf_counter() - self.written
        if idle < self.keepalive:
            self._timer = asyncio.get_running_loop().call_later(self.keepalive - idle, self._due)
        else:
            self._timer = None
            self._ping = asyncio.ensure_future(self._send_keepalive())

    async def _send_keepalive(self) -> None:
        assert self.lock is not None
        try:
            if self.boundary and not self.lock.locked():
                async with self.lock:
                    await self.send({"type": "http.response.body", "body": KEEPALIVE,
                                     "more_body": True})  # fmt: skip
        except Exception:  # the client went away; the relay notices and ends on its own
            return
        self.written = perf_counter()
        self._timer = asyncio.get_running_loop().call_later(self.keepalive, self._due)
