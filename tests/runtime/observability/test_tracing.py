"""Request spans: one per request, named and filled as OpenTelemetry's GenAI conventions say,
continuing the client's trace and carried on to the engine (the toy engines record the
headers they get); spans kept by the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engines.vllm import VLLMBackend
from runtime.config.settings import Settings, load_settings
from runtime.fleet.backend import LaunchRequest
from runtime.observability.tracing import Tracing, response_id
from tests.support.toy_gateway import Pair, toy_pair

CHAT: dict[str, Any] = {
    "model": "toy",
    "messages": [{"role": "user", "content": "w1 w2"}],
    "max_tokens": 5,
}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Pair, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracing = Tracing.create("unused", processor=SimpleSpanProcessor(exporter))
    with toy_pair(tmp_path, tracing=tracing, migration_limit=1) as pair:
        yield pair, exporter


def finished(exporter: InMemorySpanExporter, count: int = 1) -> list[ReadableSpan]:
    spans = list(exporter.get_finished_spans())
    assert len(spans) == count, [s.name for s in spans]
    return spans


def test_an_inference_gets_one_server_span_in_genai_terms(
    traced: tuple[Pair, InMemorySpanExporter],
) -> None:
    pair, exporter = traced
    reply = pair.post("/v1/chat/completions", CHAT)
    assert reply.status_code == 200
    [span] = finished(exporter)
    assert span.name == "chat toy" and span.kind is SpanKind.SERVER
    attributes = dict(span.attributes or {})
    usage = reply.json()["usage"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "toy"
    assert attributes["gen_ai.response.id"] == reply.json()["id"]
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes["chutebox.chute"] == "toy" and attributes["chutebox.replica"] in (0, 1)
    assert attributes["chutebox.invocation_id"] == reply.headers["x-chutes-invocationid"]
    assert attributes["http.response.status_code"] == 200
    assert isinstance(attributes["gen_ai.latency.time_in_queue"], float)
    assert "chutebox.migrations" not in attributes
    assert span.status.status_code is StatusCode.UNSET


def test_a_clients_trace_is_continued_and_carried_to_the_engine(
    traced: tuple[Pair, InMemorySpanExporter],
) -> None:
    pair, exporter = traced
    traceparent = f"00-{TRACE_ID}-{PARENT}-01"
    reply = pair.post(
        "/v1/completions",
        {"model": "toy", "prompt": "w3", "max_tokens": 5, "stream": True},
        headers={"traceparent": traceparent},
    )
    assert reply.status_code == 200
    [span] = finished(exporter)
    context = span.get_span_context()
    assert f"{context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT
    assert span.name == "text_completion toy"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.response.id"].startswith("cmpl-")
    assert isinstance(attributes["gen_ai.latency.time_to_first_token"], float)
    # The engine got the gateway's span as the parent of its own.
    [headers] = [h for engine in pair.engines for h in engine.headers]
    assert headers[b"traceparent"] == f"00-{TRACE_ID}-{context.span_id:016x}-01".encode()


def test_a_migrated_request_and_a_failed_one_say_so(
    traced: tuple[Pair, InMemorySpanExporter],
) -> None:
    pair, exporter = traced
    pair.cuts.append(3)
    assert pair.post("/v1/chat/completions", {**CHAT, "stream": True}).status_code == 200
    pair.cuts.extend([1, 1])  # a whole reply broken off twice: once more than it may move
    assert pair.post("/v1/chat/completions", CHAT).status_code == 502
    unknown = pair.post("/v1/chat/completions", {**CHAT, "model": "nope"})
    assert unknown.status_code == 404
    moved, failed, missing = finished(exporter, 3)
    assert dict(moved.attributes or {})["chutebox.migrations"] == 1
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "502"
    assert missing.name == "POST /v1/chat/completions"  # no chute: not an inference
    assert missing.status.status_code is StatusCode.UNSET


def test_without_tracing_no_trace_context_reaches_the_engine(tmp_path: Path) -> None:
    with toy_pair(tmp_path) as pair:
        pair.post(
            "/v1/chat/completions", CHAT, headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}
        )
        [headers] = [h for engine in pair.engines for h in engine.headers]
    assert b"traceparent" not in headers


def test_the_response_id_is_read_from_the_start_of_a_reply() -> None:
    assert response_id(b'{"id":"chatcmpl-1","object":"chat.completion"}') == "chatcmpl-1"
    assert response_id(b'data: {"id": "cmpl-2", "choices": []}\n\n') == "cmpl-2"
    assert response_id(b'{"object":"list","data":[]}') is None


def test_otel_variables_configure_the_endpoint_and_protocol(tmp_path: Path) -> None:
    def settings(environ: dict[str, str]) -> Settings:
        return load_settings({"model": "m"}, environ=environ)

    assert settings({}).otlp_endpoint is None
    traces = settings({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4317"})
    assert traces.otlp_endpoint == "collector:4317" and traces.otlp_protocol == "grpc"
    base = settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    )
    assert base.otlp_endpoint == "http://collector:4318/v1/traces"
    assert base.otlp_protocol == "http/protobuf"


def test_vllm_chutes_are_started_tracing_to_the_same_collector() -> None:
    request = LaunchRequest(
        model_path="/m",
        served_name="tiny",
        api_key="k",
        python="py",
        device="cpu",
        port=1,
        otlp_endpoint="http://c:4318/v1/traces",
        otlp_protocol="http/protobuf",
    )
    spec = VLLMBackend().launch(request)
    at = spec.argv.index("--otlp-traces-endpoint")
    assert spec.argv[at + 1] == "http://c:4318/v1/traces"
    assert spec.env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    untraced = VLLMBackend().launch(
        LaunchRequest(model_path="/m", served_name="tiny", api_key="k", python="py", device="cpu")
    )
    assert "--otlp-traces-endpoint" not in untraced.argv
