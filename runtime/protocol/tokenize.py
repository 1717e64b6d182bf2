"""`POST /tokenize` and `/detokenize`, as vLLM chutes expose them."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from runtime.protocol.chat import ChatCompletionMessage
from runtime.protocol.common import PASSTHROUGH, ParamError


class TokenizeRequest(BaseModel):
    """Either `prompt` (a string) or `messages` (rendered with the chat template)."""

    model_config = PASSTHROUGH

    model: str = Field(min_length=1)
    prompt: str | None = None
    messages: list[ChatCompletionMessage] | None = None
    add_special_tokens: bool | None = None

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ParamError("prompt", "give exactly one of `prompt` and `messages`")
        return self


class DetokenizeRequest(BaseModel):
    model_config = PASSTHROUGH

    model: str = Field(min_length=1)
    tokens: list[int] = Field(min_length=0)
