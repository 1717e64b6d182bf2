"""One route as the gateway serves and documents it: the `Operation` record and its kinds.

The table of every route is `runtime.api.route_table`; this module is the shape of one entry, kept
apart so that what reads an operation (the request record, the error dialect) need not import
the table and the handlers it names.
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
from starlette.types import ASGIApp

from runtime.errors import Dialect
from runtime.fleet.chutes import Chute
from runtime.protocol.messages import AnthropicErrorResponse

# A request-response function, or a plain ASGI app for a handler that streams its own reply.
Handler = Callable[[Request], Awaitable[Response]] | ASGIApp


class Rewrite(enum.Enum):
    """Which of the platform's request rewrites (`runtime.protocol.rewrite`) a route's body gets."""

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
    page: bool = False  # part of the status page (left out with --no-ui)

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

    def served_by(self, chute: Chute) -> bool:
        """Whether the chute's engine serves this route: within its backend's capabilities
        and, when the engine published its routes (`/openapi.json`), among them — a vLLM
        pooling engine serves /v1/rerank only for a model that can score, and says so."""
        if self.capability is None or self.capability not in chute.backend.capabilities:
            return False
        published = chute.fields.routes if chute.fields is not None else None
        return published is None or (self.method, self.path) in published


def served_paths(chute: Chute, operations: tuple[Operation, ...]) -> list[str]:
    """The paths among `operations` that the chute's engine serves, as clients call them."""
    return sorted({op.path for op in operations if op.exact and op.served_by(chute)})
