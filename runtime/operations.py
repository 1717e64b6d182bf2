"""Every route the gateway serves, declared once.

One `Operation` per (method, path) says what the route is: its request, reply and stream
schemas, and either the engine capability it forwards to (with whether it takes a slot, how
the body is rewritten, how the chute is found, whose error shape it answers in) or the
gateway's own handler. Dispatch (`runtime.dispatch`), the OpenAPI document (`runtime.openapi`),
the capability check and the error dialect are all read from this table: adding a route is an
entry here plus its schemas.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from runtime.backend import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    IMAGES,
    MESSAGES,
    RERANK,
    RESPONSES,
    TOKENIZE,
)
from runtime.errors import Dialect
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.protocol.embeddings import EmbeddingRequest
from runtime.protocol.images import GenerateRequest, ImageGenerationRequest
from runtime.protocol.messages import (
    AnthropicErrorResponse,
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
from runtime.routes import health, models

Handler = Callable[[Request], Awaitable[Response]]


class Rewrite(enum.Enum):
    """Which of the platform's request rewrites (`runtime.rewrite`) a route's body gets."""

    MODEL = "model"  # the served name only
    COMPLETION = "completion"  # and stream_options.include_usage
    CHAT = "chat"  # and the chat rules (tool_choice, thinking, top_logprobs)


class Target(enum.Enum):
    """How an engine route finds its chute."""

    MODEL = "model"  # the body's `model`
    RESPONSE = "response"  # the chute that made the stored response in the path


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
STORED_ERRORS = {
    "401": ENGINE_ERRORS["401"],
    "404": "no stored response with this id here (the gateway remembers the most recent ones)",
    "502": ENGINE_ERRORS["502"],
    "503": ENGINE_ERRORS["503"],
}
OPEN_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
PROBE = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Operation:
    """One route: its bodies, the failures it can answer, and how it is served.

    An engine route has a `capability`; the gateway's own routes have a `handler`.
    """

    path: str
    method: str
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    stream: type[BaseModel] | None = None  # the event schema when `stream: true`
    capability: str | None = None
    handler: Handler | None = None
    slot: bool = True  # takes one of the chute's concurrency slots
    rewrite: Rewrite = Rewrite.MODEL
    target: Target = Target.MODEL
    dialect: Dialect = Dialect.OPENAI
    # Events named by an `event:` line, no `[DONE]` (Responses and Messages streams).
    named_events: bool = False
    media: str = "application/json"
    errors: Mapping[str, str] = field(default_factory=lambda: ENGINE_ERRORS)
    public: bool = False
    raw: dict[str, Any] | None = None  # response schema when no model describes it
    error_body: dict[str, Any] | None = None  # failure body when not the dialect's envelope
    route_path: str | None = None  # Starlette's spelling, where it differs from OpenAPI's

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    @property
    def exact(self) -> bool:
        """Whether the path has no parameters (dispatched by a dict lookup)."""
        return "{" not in self.path

    @property
    def error_model(self) -> type[BaseModel] | None:
        return AnthropicErrorResponse if self.dialect is Dialect.ANTHROPIC else None


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
    Operation("/health", "GET", "Liveness", raw=PROBE, errors={}, public=True,
              handler=health.health),
    Operation("/ping", "GET", "Liveness (Chutes' name)", raw=PROBE, errors={}, public=True,
              handler=health.health),
    Operation("/ready", "GET", "Readiness: 200 once every engine answers", raw=OPEN_OBJECT,
              errors={"503": "an engine is not ready, or the gateway is draining"},
              error_body=OPEN_OBJECT, public=True, handler=health.ready),
)  # fmt: skip
ENGINE_OPERATIONS = tuple(op for op in OPERATIONS if op.capability is not None)


def exact_table(operations: tuple[Operation, ...] = OPERATIONS) -> dict[tuple[str, str], Operation]:
    """(path, method) → operation, for the routes without path parameters."""
    return {(op.path, op.method): op for op in operations if op.exact}
