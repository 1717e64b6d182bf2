"""`POST /v1/chat/completions` request schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.protocol.common import ParamError, SamplingFields


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatCompletionTool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class ChatCompletionNamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionMessageToolCallParam(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"]
    function: dict[str, Any]


class ChatCompletionContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1)


class ChatCompletionMessage(BaseModel):
    """One message of the conversation; the role decides which fields it needs."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ChatCompletionContentPart] | None = None
    name: str | None = None
    tool_calls: list[ChatCompletionMessageToolCallParam] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _role_fields(self) -> ChatCompletionMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            if self.role != "assistant":
                raise ParamError("content", f"a {self.role} message needs `content`")
        # A tool message without `tool_call_id` is let through: OpenAI requires the field, but
        # vLLM and SGLang accept the message (their chat templates decide), and so does Chutes.
        return self


class JSONSchema(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchema | None = None

    @model_validator(mode="after")
    def _schema_when_needed(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ParamError("json_schema", "type json_schema needs `json_schema`")
        return self


class ChatCompletionRequest(SamplingFields):
    """The OpenAI chat request, with Chutes' documented parameters validated."""

    messages: list[ChatCompletionMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[ChatCompletionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ChatCompletionNamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    reasoning_effort: str | None = None
    # The rest of OpenAI's fields: what they mean is OpenAI's platform (storage, service tiers,
    # audio, web search…) or deprecated. They are accepted, and reach an engine that names
    # them in its request schema; for one that does not, they are dropped (runtime.protocol.fields).
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: str | None = None
    moderation: dict[str, Any] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise ParamError("stream_options", "only allowed when `stream` is true")
        if self.top_logprobs and not self.logprobs:
            raise ParamError("top_logprobs", "needs `logprobs: true`")
        if isinstance(self.tool_choice, ChatCompletionNamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise ParamError(
                    "tool_choice",
                    f"names function {self.tool_choice.function.name!r}, which is not in `tools`",
                )
        elif self.tool_choice in ("auto", "required") and not self.tools:
            raise ParamError("tool_choice", f"{self.tool_choice!r} needs `tools`")
        return self
