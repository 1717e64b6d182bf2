"""Anthropic's Messages API, as vLLM serves it at `/v1/messages`: request, reply, events, errors.

Named as Anthropic's API reference names them. The gateway checks what it must (model,
max_tokens, messages and their roles); content blocks, tools and thinking pass as the engine
reads them. Anthropic's errors have their own shape: `{"type": "error", "error": {"type",
"message"}}`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.protocol.common import PASSTHROUGH

_OPEN = ConfigDict(extra="allow")


class MessageParam(BaseModel):
    """One turn: text, or content blocks (text, image, tool_use, tool_result, thinking)."""

    model_config = _OPEN
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class _Conversation(BaseModel):
    model_config = PASSTHROUGH

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None
    speed: str | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None


class CreateMessageParams(_Conversation):
    """`POST /v1/messages`: `max_tokens` is required, as Anthropic requires it.

    The fields are those of the official SDK's `MessageCreateParams` (a test holds them to
    it), and the sampling fields Anthropic's API took until recently and vLLM still reads."""

    max_tokens: int = Field(ge=1)
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    container: str | dict[str, Any] | None = None
    diagnostics: dict[str, Any] | None = None
    inference_geo: str | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)


class CountMessageTokensParams(_Conversation):
    """`POST /v1/messages/count_tokens`: the conversation, without sampling."""


class MessageUsage(BaseModel):
    model_config = _OPEN
    input_tokens: int
    output_tokens: int


class Message(BaseModel):
    """A Messages API reply."""

    model_config = _OPEN
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None = None
    usage: MessageUsage


class MessageStreamEvent(BaseModel):
    """One streamed event: message_start, content_block_start/delta/stop, message_delta,
    message_stop, ping or error; its SSE `event:` line repeats `type`."""

    model_config = _OPEN
    type: Literal[
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    ]


class MessageTokensCount(BaseModel):
    model_config = _OPEN
    input_tokens: int


class AnthropicErrorDetail(BaseModel):
    model_config = _OPEN
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    """Anthropic's error body, on the Messages routes."""

    model_config = _OPEN
    type: Literal["error"]
    error: AnthropicErrorDetail
