"""The gateway's OpenAPI 3.1 document, generated from the protocol models.

Request bodies are the schemas requests are validated with, and responses the schemas the
conformance kit checks replies with, so the document cannot drift from the code. Status codes
are the ones the gateway can answer with on each route; a fuzzer holds it to them. It is
served at `GET /openapi.json`, built once per app.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime import __version__
from runtime.api.operation import OPEN_OBJECT, Operation
from runtime.api.route_table import OPERATIONS
from runtime.api.state import gateway_of
from runtime.fleet.cords import Cord
from runtime.protocol.messages import AnthropicErrorResponse
from runtime.protocol.responses import ErrorResponse

REF = "#/components/schemas/{model}"


def openapi_route(
    *, metrics: bool, public_models: bool, operations: tuple[Operation, ...] = OPERATIONS
) -> Route:
    rendered: list[Response] = []

    async def openapi(request: Request) -> Response:
        if not rendered:
            chutes = gateway_of(request).chutes
            names = [c.name for c in chutes if c.code is None]
            cords = [(c.name, cord) for c in chutes if c.code is not None for cord in c.code.cords]
            document = build_document(names, metrics=metrics, public_models=public_models,
                                      operations=operations, cords=cords)  # fmt: skip
            rendered.append(JSONResponse(document))
        return rendered[0]

    return Route("/openapi.json", openapi, methods=["GET"])


def build_document(
    model_names: list[str],
    *,
    metrics: bool,
    public_models: bool,
    operations: tuple[Operation, ...] = OPERATIONS,
    cords: Sequence[tuple[str, Cord]] = (),
) -> dict[str, Any]:
    """The document for a gateway serving `operations` and `model_names` (offered as examples
    of `model`), and custom chutes' `cords` (chute name, cord) at their `/chutes/` paths."""
    models = {m for op in operations for m in (op.request, op.response, op.stream) if m}
    models |= {ErrorResponse, AnthropicErrorResponse}
    keys, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    ref = {m: keys[(m, "validation")]["$ref"] for m in models}
    schemas = defs.get("$defs", {})
    if model_names:
        for op in operations:
            if op.request is not None:
                _name_models(schemas[op.request.__name__], model_names)
    paths: dict[str, Any] = {}
    for op in operations:
        public = op.public or (public_models and op.path.startswith("/v1/models"))
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, ref, public)
    for chute, cord in cords:
        path = f"/chutes/{chute}{cord.path}"
        paths.setdefault(path, {})[cord.method.lower()] = _cord(chute, cord, ref[ErrorResponse])
    paths["/openapi.json"] = {"get": _plain("This document", "application/json", OPEN_OBJECT)}
    if metrics:
        paths["/metrics"] = {"get": _plain("Prometheus metrics", "text/plain", {"type": "string"})}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chutebox",
            "version": __version__,
            "description": "The Chutes API, served locally: OpenAI-compatible routes "
            "(chat, completions, responses, embeddings, rerank), Anthropic's Messages API, "
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


def _event(chunk: str, error: str, named: bool) -> dict[str, Any]:
    """One server-sent event, as OpenAPI 3.1 tools read `schema` of text/event-stream.

    OpenAI's chat and completion streams are bare `data:` chunks ending in `[DONE]`; the
    Responses and Messages streams name each event (`event:` repeats the chunk's `type`)."""
    json_chunk = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"anyOf": [{"$ref": chunk}, {"$ref": error}]},
    }
    if named:
        data: dict[str, Any] = {
            "description": "a JSON event whose `type` the `event:` line "
            "repeats; an error event when the stream fails",
            **json_chunk,
        }
    else:
        data = {
            "description": 'a JSON chunk, an `{"error": …}` chunk when the stream fails '
            "after its headers, and last the literal `[DONE]`",
            "anyOf": [{"const": "[DONE]"}, json_chunk],
        }
    return {
        "type": "object",
        "required": ["data", "event"] if named else ["data"],
        "properties": {
            "data": data,
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


def _operation(op: Operation, ref: dict[type[BaseModel], str], public: bool) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if op.response is not None:
        content[op.media] = {"schema": {"$ref": ref[op.response]}}
    elif op.raw is not None:
        content[op.media] = {"schema": op.raw}
    error_ref = ref[op.error_model or ErrorResponse]
    if op.stream is not None:
        content["text/event-stream"] = {"schema": _event(ref[op.stream], error_ref,
                                                          op.named_events)}  # fmt: skip
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    error_schema = op.error_body or {"$ref": error_ref}
    error = {"application/json": {"schema": error_schema}}
    for status, why in op.errors.items():
        if not (public and status == "401"):
            responses[status] = {"description": why, "content": error}
    operation: dict[str, Any] = {"summary": op.summary, "responses": responses}
    if op.request is not None:
        schema: dict[str, Any] = {"$ref": ref[op.request]}
        operation["requestBody"] = {"required": True, "content": {"application/json":
                                    {"schema": schema}}}  # fmt: skip
    if op.params:
        string = {"type": "string"}
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": string} for name in op.params
        ]
    if public:
        operation["security"] = []
    return operation


def _cord(chute: str, cord: Cord, error_ref: str) -> dict[str, Any]:
    """A custom chute's cord: its body schema as the SDK validates it, what it answers, and
    the statuses the gateway adds around it."""
    media = cord.output_content_type or "application/json"
    body: dict[str, Any] = {} if media.startswith("application/json") else {
        "type": "string", "format": "binary"}  # fmt: skip
    error = {"application/json": {"schema": {"$ref": error_ref}}}
    refused = {"application/json": {"schema": {"type": "object", "properties": {
        "detail": {"type": "string"}}}}}  # fmt: skip
    responses: dict[str, Any] = {
        "200": {"description": "what the cord returned", "content": {media: {"schema": body}}},
        "400": {"description": "the cord's schema refused the body (the SDK's own answer)",
                "content": refused},
        "401": {"description": "no valid key", "content": error},
        "429": {"description": "the chute's concurrency is in use", "content": error},
        "503": {"description": "the chute is not ready", "content": error},
    }  # fmt: skip
    operation: dict[str, Any] = {
        "summary": f"{chute}: {cord.function}" + (" (streamed)" if cord.stream else ""),
        "responses": responses,
    }
    if cord.method != "GET":
        schema = dict(cord.body_schema) if cord.body_schema else {"type": "object"}
        operation["requestBody"] = {"required": True, "content": {"application/json":
                                    {"schema": schema}}}  # fmt: skip
    return operation


def _plain(summary: str, media: str, schema: dict[str, Any]) -> dict[str, Any]:
    ok = {"description": "OK", "content": {media: {"schema": schema}}}
    return {"summary": summary, "security": [], "responses": {"200": ok}}
