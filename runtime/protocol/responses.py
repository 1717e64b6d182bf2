"""Response schemas, named as OpenAI's spec names them; the conformance kit validates with them.

Extra fields are allowed (engines add their own); required fields and their types are checked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

_OPEN = ConfigDict(extra="allow")


class CompletionUsage(BaseModel):
    model_config = _OPEN
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(BaseModel):
    model_config = _OPEN
    name: str
    arguments: str


class ChatCompletionMessageToolCall(BaseModel):
    model_config = _OPEN
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatCompletionResponseMessage(BaseModel):
    model_config = _OPEN
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None


class ChatCompletionChoice(BaseModel):
    model_config = _OPEN
    index: int
    message: ChatCompletionResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class CreateChatCompletionResponse(BaseModel):
    model_config = _OPEN
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage | None = None


class ChatCompletionStreamChoice(BaseModel):
    model_config = _OPEN
    index: int
    delta: dict[str, Any]
    finish_reason: str | None = None


class CreateChatCompletionStreamResponse(BaseModel):
    model_config = _OPEN
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatCompletionStreamChoice]
    usage: CompletionUsage | None = None


class CompletionChoice(BaseModel):
    model_config = _OPEN
    index: int
    text: str
    finish_reason: Literal["stop", "length", "content_filter"] | None


class CreateCompletionResponse(BaseModel):
    model_config = _OPEN
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None


class Embedding(BaseModel):
    model_config = _OPEN
    index: int
    object: Literal["embedding"]
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    model_config = _OPEN
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    model_config = _OPEN
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelObject(BaseModel):
    model_config = _OPEN
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ListModelsResponse(BaseModel):
    model_config = _OPEN
    object: Literal["list"]
    data: list[ModelObject]


class ImageObject(BaseModel):
    model_config = _OPEN
    b64_json: str | None = None
    url: str | None = None


class ImagesResponse(BaseModel):
    model_config = _OPEN
    created: int
    # Optional in OpenAI's spec (only `created` is promised); checks that need images say so.
    data: list[ImageObject] | None = None


class ErrorObject(BaseModel):
    model_config = _OPEN
    message: str
    type: str | None = None
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body: `{"error": {...}}` (chutebox adds Chutes' `detail`)."""

    model_config = _OPEN
    error: ErrorObject
