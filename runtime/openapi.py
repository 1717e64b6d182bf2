"""The gateway's OpenAPI 3.1 document, generated from the protocol models.

Request bodies are the schemas requests are validated with, and responses the schemas the
conformance kit checks replies with, so the document cannot drift from the code. Status codes
are the ones the gateway can answer with on each route; a fuzzer holds it to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from runtime import __version__
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.protocol.embeddings import EmbeddingRequest
from runtime.protocol.images import GenerateRequest, ImageGenerationRequest
from runtime.protocol.models import Model, ModelList
from runtime.protocol.responses import (
    CreateChatCompletionResponse,
    CreateChatCompletionStreamResponse,
    CreateCompletionResponse,
    CreateEmbeddingResponse,
    ErrorResponse,
    ImagesResponse,
)
from runtime.protocol.tokenize import DetokenizeRequest, TokenizeRequest

REF = "#/components/schemas/{model}"
# What each failure status means on an engine-bound route.
ENGINE_ERRORS = {
    "400": "invalid request: the message and `param` name the field",
    "401": "missing or invalid API key",
    "404": "no chute serves this `model`",
    "413": "request body over the limit",
    "429": "the chute's concurrency slots are all taken (see Retry-After)",
    "502": "the engine did not answer or broke off its reply",
    "503": "the chute's engine is starting, restarting, failed, or the gateway is draining",
}
OPEN_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


@dataclass(frozen=True)
class Operation:
    """One route as the document describes it: its bodies, and the failures it can answer."""

    path: str
    method: str
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    stream: type[BaseModel] | None = None  # the event schema when `stream: true`
    media: str = "application/json"
    errors: dict[str, str] = field(default_factory=lambda: ENGINE_ERRORS)
    public: bool = False
    raw: dict[str, Any] | None = None  # response schema when no model describes it
    error_body: dict[str, Any] | None = None  # failure body when it is not the error envelope


PROBE = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
OPERATIONS = (
    Operation("/v1/chat/completions", "post", "Create a chat completion",
              ChatCompletionRequest, CreateChatCompletionResponse,
              CreateChatCompletionStreamResponse),
    Operation("/v1/completions", "post", "Create a text completion", CompletionRequest,
              CreateCompletionResponse, CreateCompletionResponse),
    Operation("/v1/embeddings", "post", "Create embeddings", EmbeddingRequest,
              CreateEmbeddingResponse),
    Operation("/v1/images/generations", "post", "Generate images (base64 PNG)",
              ImageGenerationRequest, ImagesResponse),
    Operation("/generate", "post", "Generate one image (Chutes' route): the JPEG itself",
              GenerateRequest, media="image/jpeg", raw={"type": "string", "format": "binary"}),
    Operation("/tokenize", "post", "Tokenize a prompt or messages", TokenizeRequest,
              raw=OPEN_OBJECT),
    Operation("/detokenize", "post", "Turn token ids back into text", DetokenizeRequest,
              raw=OPEN_OBJECT),
    Operation("/v1/models", "get", "List the models served", response=ModelList,
              errors={"401": ENGINE_ERRORS["401"]}),
    Operation("/v1/models/{model}", "get", "Retrieve one model", response=Model,
              errors={"401": ENGINE_ERRORS["401"], "404": "no such model"}),
    Operation("/health", "get", "Liveness", raw=PROBE, errors={}, public=True),
    Operation("/ping", "get", "Liveness (Chutes' name)", raw=PROBE, errors={}, public=True),
    Operation("/ready", "get", "Readiness: 200 once every engine answers", raw=OPEN_OBJECT,
              errors={"503": "an engine is not ready, or the gateway is draining"},
              error_body=OPEN_OBJECT,
              public=True),
)  # fmt: skip


def build_document(model_names: list[str], *, metrics: bool, public_models: bool) -> dict[str, Any]:
    """The document for a gateway serving `model_names` (offered as examples of `model`)."""
    models = {m for op in OPERATIONS for m in (op.request, op.response, op.stream) if m}
    models.add(ErrorResponse)
    keys, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    ref = {m: keys[(m, "validation")]["$ref"] for m in models}
    schemas = defs.get("$defs", {})
    if model_names:
        for op in OPERATIONS:
            if op.request is not None:
                _name_models(schemas[op.request.__name__], model_names)
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        public = op.public or (public_models and op.path.startswith("/v1/models"))
        paths.setdefault(op.path, {})[op.method] = _operation(op, ref, public, model_names)
    paths["/openapi.json"] = {"get": _plain("This document", "application/json", OPEN_OBJECT)}
    if metrics:
        paths["/metrics"] = {"get": _plain("Prometheus metrics", "text/plain", {"type": "string"})}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chutebox",
            "version": __version__,
            "description": "The Chutes API, served locally: OpenAI-compatible routes "
            "and Chutes' image route.",
        },  # fmt: skip
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def _event(chunk: str, error: str) -> dict[str, Any]:
    """One server-sent event, as OpenAPI 3.1 tools read `schema` of text/event-stream."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "description": 'a JSON chunk, an `{"error": …}` chunk when the stream fails '
                "after its headers, and last the literal `[DONE]`",
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [{"$ref": chunk}, {"$ref": error}]},
                    },
                ],
            },  # fmt: skip
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }


def _name_models(schema: dict[str, Any], names: list[str]) -> None:
    """`model` takes the names served here (a `:THINKING` suffix is accepted beyond them)."""
    prop = schema.get("properties", {}).get("model")
    if prop is None:
        return
    named = {"type": "string", "enum": names}
    if "anyOf" in prop:  # the image routes may leave `model` out
        prop["anyOf"] = [named, {"type": "null"}]
    else:
        prop.clear()
        prop.update(named)


def _operation(
    op: Operation, ref: dict[type[BaseModel], str], public: bool, names: list[str]
) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if op.response is not None:
        content[op.media] = {"schema": {"$ref": ref[op.response]}}
    elif op.raw is not None:
        content[op.media] = {"schema": op.raw}
    if op.stream is not None:
        content["text/event-stream"] = {"schema": _event(ref[op.stream], ref[ErrorResponse])}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    error_schema = op.error_body or {"$ref": ref[ErrorResponse]}
    error = {"application/json": {"schema": error_schema}}
    for status, why in op.errors.items():
        if not (public and status == "401"):
            responses[status] = {"description": why, "content": error}
    operation: dict[str, Any] = {"summary": op.summary, "responses": responses}
    if op.request is not None:
        schema: dict[str, Any] = {"$ref": ref[op.request]}
        operation["requestBody"] = {"required": True, "content": {"application/json":
                                    {"schema": schema}}}  # fmt: skip
    if op.path == "/v1/models/{model}":
        operation["parameters"] = [{"name": "model", "in": "path", "required": True,
                                    "schema": {"type": "string"}}]  # fmt: skip
    if public:
        operation["security"] = []
    return operation


def _plain(summary: str, media: str, schema: dict[str, Any]) -> dict[str, Any]:
    ok = {"description": "OK", "content": {media: {"schema": schema}}}
    return {"summary": summary, "security": [], "responses": {"200": ok}}
