"""Request spans over OpenTelemetry, joined with the engine's own.

With an OTLP endpoint configured, every request gets one server span named as OpenTelemetry's
GenAI conventions name an inference (`chat tiny`), with their attributes (`gen_ai.*`) and
chutebox's own (`chutebox.*`: the chute, the replica, migrations). A `traceparent` the client
sent is continued, and the span's context goes to the engine in the same header, so vLLM's
`llm_request` span (vLLM chutes are started with `--otlp-traces-endpoint`) is its child.
Spans are exported off the event loop by the SDK's batch processor.

Off by default: then no tracer exists and a request costs one `is None` test. The SDK is
imported only when an endpoint is set (the `otel` extra).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runtime.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span

INSTALL_HINT = "tracing needs OpenTelemetry's SDK: pip install 'chutebox[otel]'"
GRPC, HTTP = "grpc", "http/protobuf"
# GenAI's operation names, by the gateway's capability.
OPERATION_NAMES = {
    "chat": "chat", "completions": "text_completion", "embeddings": "embeddings",
    "responses": "chat", "messages": "chat", "images": "generate_content", "rerank": "rerank",
}  # fmt: skip
# A reply's id: the first "id" key of a JSON body or of a stream's first event.
_ID = re.compile(rb'"id"\s*:\s*"([^"]{1,200})"')


def response_id(start: bytes) -> str | None:
    """The response id at the start of an engine's reply, if it has one."""
    found = _ID.search(start, 0, 400)
    return found.group(1).decode("utf-8", "replace") if found else None


class Tracing:
    """Makes, fills and ends request spans; exports them through `processor`."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("chutebox")
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def create(
        cls,
        endpoint: str,
        protocol: str = GRPC,
        processor: SpanProcessor | None = None,
    ) -> Tracing:
        """Spans sent to the OTLP `endpoint` over `protocol` (gRPC: `host:port`; HTTP: the
        whole URL, `…/v1/traces`), or to `processor` (tests hand an in-memory one)."""
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise ConfigError(INSTALL_HINT) from exc
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over the default.
        resource = Resource.create({"service.name": "chutebox"})
        provider = TracerProvider(resource=resource)
        if processor is None:
            processor = BatchSpanProcessor(_exporter(endpoint, protocol))
        provider.add_span_processor(processor)
        return cls(provider)

    def start(self, method: str, path: str, headers: Mapping[bytes, bytes]) -> Span:
        """A server span for a request starting now, continuing its `traceparent`."""
        from opentelemetry.trace import SpanKind

        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers.items()
            if name in (b"traceparent", b"tracestate")
        }
        context = self.propagator.extract(carrier) if carrier else None
        attributes = {"http.request.method": method, "url.path": path}
        return self.tracer.start_span(
            f"{method} {path}", context=context, kind=SpanKind.SERVER, attributes=attributes
        )

    def headers(self, span: Span) -> dict[str, str]:
        """The trace-context headers that make an engine's span a child of `span`."""
        from opentelemetry.trace import set_span_in_context

        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=set_span_in_context(span))
        return carrier

    def end(self, span: Span, name: str | None, attributes: Mapping[str, Any], status: int) -> None:
        """Name the span for what it turned out to be, fill it in and end it."""
        from opentelemetry.trace import Status, StatusCode

        if name is not None:
            span.update_name(name)
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def shutdown(self) -> None:
        """Export what is buffered (the batch processor's queue) and stop."""
        self.provider.shutdown()


def _exporter(endpoint: str, protocol: str) -> Any:
    try:
        if protocol == HTTP:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=endpoint)
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc
    # A plain host:port is a collector without TLS, as vLLM reads its endpoint.
    return GrpcExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
