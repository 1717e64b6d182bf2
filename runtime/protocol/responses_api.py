"""`POST /v1/responses` (OpenAI's Responses API): the request, the reply and a stream event.

Named as OpenAI's spec names them (`CreateResponse`, `Response`, `ResponseStreamEvent`). The
request declares every field the spec's `CreateResponse` has (a test holds it to the spec), so
that an engine's missing field is dropped and an unknown one refused
(`runtime.protocol.fields`); what the gateway itself checks is typed, the rest passes as the
engine reads it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.protocol.common import PASSTHROUGH, ParamError

_OPEN = ConfigDict(extra="allow")


class CreateResponse(BaseModel):
    """A Responses API request: `input` (text or items), `instructions`, tools, sampling."""

    model_config = PASSTHROUGH

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | list[dict[str, Any]] | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    store: bool | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(None, ge=1)
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    truncation: str | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    prompt: dict[str, Any] | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    moderation: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    context_management: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CreateResponse:
        if self.input in ("", []):
            raise ParamError("input", "must not be empty")
        if self.stream_options is not None and not self.stream:
            raise ParamError("stream_options", "only allowed when `stream` is true")
        return self


class ResponseUsage(BaseModel):
    model_config = _OPEN
    input_tokens: int
    output_tokens: int
    total_tokens: int


class Response(BaseModel):
    """A Responses API reply; `output` holds messages, tool calls and reasoning items."""

    model_config = _OPEN
    id: str
    object: str = Field(pattern="^response$")
    created_at: float
    model: str
    status: str | None = None
    output: list[dict[str, Any]]
    usage: ResponseUsage | None = None


class ResponseStreamEvent(BaseModel):
    """One event of a streamed response (`response.created`, `response.output_text.delta`,
    …, `response.completed`); its SSE `event:` line repeats `type`."""

    model_config = _OPEN
    type: str = Field(pattern=r"^(response\.|error$)")
    sequence_number: int | None = None
