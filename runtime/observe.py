"""Per-request observation: the access log entry, request metrics, and `Server-Timing`.

Pure ASGI. It runs outside the invocation middleware, so its log line can name the
invocation id and the status the client really got. What the route learned (the chute, the
engine's share of the time, the usage) arrives through the request's ASGI state.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.access import AccessLog
from runtime.metrics import Metrics

# nginx's code for "client closed the request": what a disconnect is counted as.
CLIENT_CLOSED = 499
# Paths the metrics count under their own name; anything else (404s, scans) is "other", so a
# stranger cannot grow the series without bound.
OTHER = "other"


class ObserveMiddleware:
    """Count, time and log every HTTP request; stamp `Server-Timing` on every reply."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None, access_log: AccessLog | None) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["started"] = started
        status = 500

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), server_timing(state, started)]
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            self._record(scope, state, status, perf_counter() - started)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, elapsed: float) -> None:
        if state.get("disconnected"):
            status = CLIENT_CLOSED
        chute = state.get("chute", "")
        route = scope.get("route")
        path = getattr(route, "path", OTHER) if route is not None else OTHER
        if self.metrics is not None:
            self.metrics.answered(chute, path, status, elapsed)
        if self.access_log is not None:
            self.access_log.add(scope, state, status, elapsed)


def server_timing(state: dict[str, Any], started: float) -> tuple[bytes, bytes]:
    """The gateway's own time so far, and the engine's when one was called (milliseconds)."""
    total = perf_counter() - started
    engine = state.get("engine_wait")
    if engine is None:
        return (b"server-timing", f"gateway;dur={total * 1000:.3f}".encode())
    value = f"gateway;dur={(total - engine) * 1000:.3f}, engine;dur={engine * 1000:.3f}"
    return (b"server-timing", value.encode())
