"""`POST /v1/embeddings` request schema (OpenAI's, as Chutes serves it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from runtime.protocol.common import PASSTHROUGH, ParamError

EmbeddingInput = str | list[str] | list[int] | list[list[int]]


class EmbeddingRequest(BaseModel):
    """Text (a string or a list of strings) or token arrays, for engines that take them."""

    model_config = PASSTHROUGH

    model: str = Field(min_length=1)
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    # vLLM's name: -1 truncates to the model's maximum, k > 0 keeps the last k tokens.
    truncate_prompt_tokens: int | None = Field(None, ge=-1)

    @model_validator(mode="after")
    def _non_empty(self) -> EmbeddingRequest:
        if self.input == "" or self.input == []:
            raise ParamError("input", "must not be empty")
        if isinstance(self.input, list):
            for i, item in enumerate(self.input):
                if item == "" or item == []:
                    raise ParamError(f"input.{i}", "must not be empty")
        if self.truncate_prompt_tokens == 0:
            raise ParamError("truncate_prompt_tokens", "must be -1 or a positive count")
        return self

    def count(self) -> int:
        if isinstance(self.input, str):
            return 1
        if self.input and isinstance(self.input[0], int):
            return 1
        return len(self.input)
