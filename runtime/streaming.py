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
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import aiohttp
from starlette.types import Receive, Scope, Send

from engines.base import AbortCall
from runtime.chutes import Endpoint
from runtime.errors import UpstreamError, from_engine_body, sse_error_event
from runtime.upstream import Upstream

T = TypeVar("T")
log = logging.getLogger("chutebox.app")
SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
# Engine reply headers that mean something to the client (the image route's file name).
RELAYED_HEADERS = ("Content-Disposition",)


class ClientDisconnected(Exception):
    """The client went away before the reply was complete."""


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Run `work`; cancel it and raise ClientDisconnected if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        watcher.cancel()
    if task.cancelled() or not task.done():
        # Let the cancelled relay run its cleanup (closing the upstream) before returning.
        await asyncio.gather(task, return_exceptions=True)
        raise ClientDisconnected()
    return task.result()


class EngineCall:
    """Forward one request to an engine and relay the reply to the client."""

    def __init__(
        self,
        upstream: Upstream,
        endpoint: Endpoint,
        path: str,
        body: bytes | None,
        *,
        method: str = "POST",
        headers: Callable[[], Mapping[str, str]] = dict,
        on_done: Callable[[], None] | None = None,
        abort: AbortCall | None = None,
    ) -> None:
        self.upstream = upstream
        self.endpoint = endpoint
        self.path = path
        self.body = body
        self.method = method
        self.headers = headers
        self.on_done = on_done
        self.abort = abort

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await run_until_disconnect(receive, self._relay(send))
        except ClientDisconnected:
            if self.abort is not None:
                await self._send_abort(self.abort)
        finally:
            if self.on_done is not None:
                self.on_done()

    async def _send_abort(self, call: AbortCall) -> None:
        """Tell an engine that does not notice closed connections to stop the request."""
        try:
            body = json.dumps(dict(call.body)).encode()
            response = await asyncio.wait_for(
                self.upstream.send(self.endpoint, "POST", call.path, body), timeout=5
            )
            response.release()
        except Exception as exc:  # the engine may be gone; the request dies with it then
            log.warning("abort %s on %s failed: %s", call.body, self.endpoint.base_url, exc)

    def _start(self, content_type: str, extra: list[tuple[bytes, bytes]]) -> dict[str, object]:
        headers = [(b"content-type", content_type.encode()), *extra]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers().items()]
        return {"type": "http.response.start", "status": 200, "headers": headers}

    async def _relay(self, send: Send) -> None:
        response = await self.upstream.send(self.endpoint, self.method, self.path, self.body)
        reusable = False
        try:
            if response.status >= 400:
                body = await _read(response)
                raise from_engine_body(response.status, body)
            content_type = response.headers.get("Content-Type", "application/json")
            if content_type.startswith("text/event-stream"):
                await send(self._start(content_type, SSE_HEADERS))
                reusable = await _relay_stream(response, send)
            else:
                body = await _read(response)
                extra = [(b"content-length", str(len(body)).encode())]
                extra += [(name.lower().encode(), response.headers[name].encode())
                          for name in RELAYED_HEADERS if name in response.headers]  # fmt: skip
                await send(self._start(content_type, extra))
                await send({"type": "http.response.body", "body": body})
                reusable = True
        finally:
            if reusable:
                response.release()
            else:
                response.close()


async def _read(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise UpstreamError(f"the engine broke off its reply: {type(exc).__name__}") from exc


async def _relay_stream(response: aiohttp.ClientResponse, send: Send) -> bool:
    """Relay SSE bytes as they arrive; False when the engine broke off the stream."""
    tail = b"\n\n"
    complete = True
    try:
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            tail = (tail + chunk)[-2:]
    except (TimeoutError, aiohttp.ClientError) as exc:
        error = UpstreamError(f"the engine broke off the stream: {type(exc).__name__}")
        # Finish any half-sent event first so the error arrives as a frame of its own.
        prefix = b"" if tail == b"\n\n" else b"\n\n"
        await send({"type": "http.response.body", "body": prefix + sse_error_event(error),
                    "more_body": True})  # fmt: skip
        complete = False
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return complete
