"""Every route the gateway serves, declared once.

One `Operation` (`runtime.api.operation`) per (method, path) says what the route is: its request,
reply and stream schemas, and either the engine capability it forwards to (with whether it
takes a slot, how the body is rewritten, how the chute is found, whose error shape it answers
in) or the gateway's own handler. Dispatch (`runtime.api.routes`), the OpenAPI document
(`runtime.api.handlers.openapi`), the capability check, the public routes and the error
dialect are all read from this table: adding a route is an entry here plus its schemas.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from runtime.api.handlers import e2ee, health, models, status, ui, users
from runtime.api.operation import (
    ENGINE_ERRORS,
    OPEN_OBJECT,
    PROBE,
    STORED_ERRORS,
    Operation,
    Rewrite,
    Target,
)
from runtime.errors import Dialect
from runtime.fleet.backend import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    IMAGES,
    MESSAGES,
    RERANK,
    RESPONSES,
    TOKENIZE,
)
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.protocol.embeddings import EmbeddingRequest
from runtime.protocol.images import GenerateRequest, ImageGenerationRequest
from runtime.protocol.messages import (
    CountMessageTokensParams,
    CreateMessageParams,
    Message,
    MessageStreamEvent,
    MessageTokensCount,
)
from runtime.protocol.models import Model, ModelList
from runtime.protocol.rerank import RerankRequest, RerankResponse, ScoreRequest, ScoreResponse
from runtime.protocol.responses import (
    CreateChatCompletionResponse,
    CreateChatCompletionStreamResponse,
    CreateCompletionResponse,
    CreateEmbeddingResponse,
    ImagesResponse,
)
from runtime.protocol.responses_api import CreateResponse, ResponseStreamEvent
from runtime.protocol.responses_api import Response as ResponseObject
from runtime.protocol.tokenize import DetokenizeRequest, TokenizeRequest


def _engine(
    path: str,
    summary: str,
    request: type[BaseModel],
    capability: str,
    response: type[BaseModel] | None = None,
    **kw: Any,
) -> Operation:
    return Operation(path, "POST", summary, request, response, capability=capability, **kw)


def _stored(path: str, method: str, summary: str) -> Operation:
    return Operation(
        path,
        method,
        summary,
        response=ResponseObject,
        capability=RESPONSES,
        slot=False,
        target=Target.RESPONSE,
        errors=STORED_ERRORS,
    )


_ANTHROPIC = {"dialect": Dialect.ANTHROPIC}
OPERATIONS: tuple[Operation, ...] = (
    _engine("/v1/chat/completions", "Create a chat completion", ChatCompletionRequest, CHAT,
            CreateChatCompletionResponse, stream=CreateChatCompletionStreamResponse,
            rewrite=Rewrite.CHAT),
    _engine("/v1/completions", "Create a text completion", CompletionRequest, COMPLETIONS,
            CreateCompletionResponse, stream=CreateCompletionResponse,
            rewrite=Rewrite.COMPLETION),
    _engine("/v1/embeddings", "Create embeddings", EmbeddingRequest, EMBEDDINGS,
            CreateEmbeddingResponse),
    _engine("/v1/responses", "Create a model response (OpenAI's Responses API)", CreateResponse,
            RESPONSES, ResponseObject, stream=ResponseStreamEvent, named_events=True),
    _stored("/v1/responses/{response_id}", "GET", "Retrieve a stored response"),
    _stored("/v1/responses/{response_id}/cancel", "POST", "Cancel a background response"),
    _engine("/v1/messages", "Create a message (Anthropic's Messages API)", CreateMessageParams,
            MESSAGES, Message, stream=MessageStreamEvent, named_events=True, **_ANTHROPIC),
    _engine("/v1/messages/count_tokens", "Count a message's input tokens (Anthropic's API)",
            CountMessageTokensParams, MESSAGES, MessageTokensCount, **_ANTHROPIC),
    _engine("/v1/rerank", "Rank documents against a query (cross-encoder)", RerankRequest,
            RERANK, RerankResponse),
    _engine("/v1/score", "Score text pairs (cross-encoder)", ScoreRequest, RERANK,
            ScoreResponse),
    _engine("/v1/images/generations", "Generate images (base64 PNG)", ImageGenerationRequest,
            IMAGES, ImagesResponse),
    _engine("/generate", "Generate one image (Chutes' route): the JPEG itself",
            GenerateRequest, IMAGES, media="image/jpeg",
            raw={"type": "string", "format": "binary"}),
    # Tokenizing takes a slot too: cheap per call, but a flood would queue on the engine's
    # event loop ahead of generation, unbounded.
    _engine("/tokenize", "Tokenize a prompt or messages", TokenizeRequest, TOKENIZE,
            raw=OPEN_OBJECT),
    _engine("/detokenize", "Turn token ids back into text", DetokenizeRequest, TOKENIZE,
            raw=OPEN_OBJECT),
    Operation("/v1/models", "GET", "List the models served", response=ModelList,
              handler=models.list_models, errors={"401": ENGINE_ERRORS["401"]}),
    Operation("/v1/models/{model}", "GET", "Retrieve one model", response=Model,
              handler=models.retrieve_model, route_path="/v1/models/{model:path}",
              errors={"401": ENGINE_ERRORS["401"], "404": "no such model"}),
    Operation("/chutes", "GET", "The chutes served, with their ids (and a custom chute's cords)",
              raw=OPEN_OBJECT, handler=models.list_chutes, errors={"401": ENGINE_ERRORS["401"]}),
    Operation("/users/me/quotas", "GET", "The calling key's daily quotas and today's use",
              raw={"type": "array", "items": OPEN_OBJECT}, handler=users.my_quotas,
              errors={"401": ENGINE_ERRORS["401"]}),
    Operation("/users/me/quota_usage/{chute}", "GET",
              "A chute's daily quota and use for the calling key ('me': the '*' pool)",
              raw=OPEN_OBJECT, handler=users.my_quota_usage,
              errors={"401": ENGINE_ERRORS["401"], "404": "no such chute"}),
    Operation("/users/me/usage", "GET", "The calling key's usage per chute and UTC day",
              raw=OPEN_OBJECT, handler=users.my_usage, errors={"401": ENGINE_ERRORS["401"]}),
    Operation("/e2e/instances/{chute}", "GET",
              "A chute's instances for end-to-end encryption: public keys and single-use nonces",
              raw=OPEN_OBJECT, handler=e2ee.list_instances,
              errors={"401": ENGINE_ERRORS["401"], "404": "no such chute"}),
    Operation("/e2e/invoke", "POST",
              "An end-to-end encrypted request (Chutes' E2EE); the reply sealed to the client",
              media="application/octet-stream", raw={"type": "string", "format": "binary"},
              handler=e2ee.invoke, errors=ENGINE_ERRORS),
    Operation("/health", "GET", "Liveness", raw=PROBE, errors={}, public=True,
              handler=health.health),
    Operation("/ping", "GET", "Liveness (Chutes' name)", raw=PROBE, errors={}, public=True,
              handler=health.health),
    Operation("/ready", "GET", "Readiness: 200 once every engine answers", raw=OPEN_OBJECT,
              errors={"503": "an engine is not ready, or the gateway is draining"},
              error_body=OPEN_OBJECT, public=True, handler=health.ready),
    Operation("/status", "GET", "Chutes, replicas, plan and live traffic (more with a key)",
              raw=OPEN_OBJECT, errors={}, public=True, handler=status.status),
    Operation("/", "GET", "The status page and playground (HTML)", media="text/html",
              raw={"type": "string"}, errors={}, public=True, handler=ui.page, page=True),
    Operation("/ui/app.js", "GET", "The status page's script", media="text/javascript",
              raw={"type": "string"}, errors={}, public=True, handler=ui.script, page=True),
    Operation("/ui/style.css", "GET", "The status page's styles", media="text/css",
              raw={"type": "string"}, errors={}, public=True, handler=ui.style, page=True),
)  # fmt: skip
ENGINE_OPERATIONS = tuple(op for op in OPERATIONS if op.capability is not None)


def without_page(operations: tuple[Operation, ...]) -> tuple[Operation, ...]:
    return tuple(op for op in operations if not op.page)


def exact_table(operations: tuple[Operation, ...] = OPERATIONS) -> dict[tuple[str, str], Operation]:
    """(path, method) → operation, for the routes without path parameters."""
    return {(op.path, op.method): op for op in operations if op.exact}
