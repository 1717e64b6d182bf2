"""Per-request observation: the access log entry, request metrics, and `Server-Timing`.

`Observer` counts, times and logs an answered request. `ObserveMiddleware`, pure ASGI and the
outermost layer of the Starlette stack, makes the request's record (`runtime.api.record`),
looking its operation up in the route table, so every layer inside reads one typed record.
The log line names the invocation id and the status the client really got; what the route
learned (the chute, the engine's share of the time, the usage) comes back through the
record.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.metering import settle_caller
from runtime.api.operation import Operation
from runtime.api.record import RequestRecord
from runtime.observability.access import AccessEntry, AccessLog
from runtime.observability.metrics import Metrics
from runtime.observability.tracing import OPERATION_NAMES, Tracing
from runtime.observability.traffic import Traffic

# nginx's code for "client closed the request": what a disconnect is counted as.
CLIENT_CLOSED = 499
# Paths the metrics count under their own name; anything else (404s, scans) is "other", so a
# stranger cannot grow the series without bound.
OTHER = "other"


class Observer:
    """Where an answered request is counted, timed and logged."""

    def __init__(
        self,
        metrics: Metrics | None,
        access_log: AccessLog | None,
        traffic: Traffic | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.traffic = traffic
        self.tracing = tracing

    def answered(self, scope: Scope, record: RequestRecord, status: int) -> None:
        elapsed = perf_counter() - record.started
        if record.ticket is not None and record.gateway is not None:
            settle_caller(record.gateway.access, record, status, elapsed)
        if record.disconnected:
            status = CLIENT_CLOSED
        if record.operation is not None:
            path = record.operation.path
        else:
            route = scope.get("route")
            path = getattr(route, "path", OTHER) if route is not None else OTHER
        if self.metrics is not None:
            self.metrics.answered(record.chute, path, status, elapsed)
        if self.access_log is not None:
            entry = AccessEntry(
                client=scope.get("client"),
                method=scope["method"],
                path=scope["path"],
                status=status,
                elapsed=elapsed,
                chute=record.chute,
                invocation_id=record.invocation_id,
                usage=record.usage,
                migrations=record.migrations,
                key=record.caller.name if record.caller is not None else None,
                load_wait=record.load_wait,
            )
            self.access_log.add(entry)
        if self.traffic is not None:
            tokens = record.usage.completion_tokens if record.usage is not None else 0
            self.traffic.answered(record.chute, status, tokens, record.ttft)


class ObserveMiddleware:
    """Count, time and log every HTTP request; stamp `Server-Timing` on every reply."""

    def __init__(
        self,
        app: ASGIApp,
        observer: Observer,
        operations: Mapping[tuple[str, str], Operation],
    ) -> None:
        self.app = app
        self.observer = observer
        self.operations = operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        op = self.operations.get((scope["path"], scope["method"]))
        record = RequestRecord.begin(scope, op)
        status = 500
        tracing = self.observer.tracing
        span = None
        if tracing is not None:
            span = tracing.start(scope["method"], scope["path"], record.headers)
            record.trace_headers = tracing.headers(span)

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), server_timing(record)]
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            self.observer.answered(scope, record, status)
            if tracing is not None and span is not None:
                status = CLIENT_CLOSED if record.disconnected else status
                tracing.end(span, span_name(record), span_attributes(record), status)


def span_name(record: RequestRecord) -> str | None:
    """An inference's span name in GenAI's terms (`chat tiny`); None keeps `METHOD path`."""
    op = record.operation
    if op is None or op.capability is None or not record.chute:
        return None
    return f"{OPERATION_NAMES.get(op.capability, op.capability)} {record.model or record.chute}"


def span_attributes(record: RequestRecord) -> dict[str, object]:
    op = record.operation
    usage = record.usage
    return {
        "gen_ai.operation.name": (
            OPERATION_NAMES.get(op.capability, op.capability)
            if op is not None and op.capability
            else None
        ),
        "gen_ai.request.model": record.model,
        "gen_ai.response.id": record.response_id,
        "gen_ai.usage.input_tokens": usage.prompt_tokens if usage is not None else None,
        "gen_ai.usage.output_tokens": usage.completion_tokens if usage is not None else None,
        "gen_ai.latency.time_in_queue": record.queue_time,
        "gen_ai.latency.time_to_first_token": record.ttft,
        "chutebox.chute": record.chute or None,
        "chutebox.replica": record.replica,
        "chutebox.invocation_id": record.invocation_id,
        "chutebox.migrations": record.migrations or None,
    }


def server_timing(record: RequestRecord) -> tuple[bytes, bytes]:
    """The gateway's own time so far, and the engine's when one was called (milliseconds)."""
    total = perf_counter() - record.started
    engine = record.engine_wait
    # Formatted as bytes: the header's own type, without a str to encode per reply.
    if engine is None:
        return (b"server-timing", b"gateway;dur=%.3f" % (total * 1000))
    value = b"gateway;dur=%.3f, engine;dur=%.3f" % ((total - engine) * 1000, engine * 1000)
    return (b"server-timing", value)
