"""`POST /v1/completions` request schema."""

from __future__ import annotations

from pydantic import Field, model_validator

from runtime.protocol.common import ParamError, SamplingFields


class CompletionRequest(SamplingFields):
    """The OpenAI (legacy) completions request."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    best_of: int | None = Field(None, ge=0, le=20)
    logprobs: int | None = Field(None, ge=0, le=20)
    suffix: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise ParamError("stream_options", "only allowed when `stream` is true")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ParamError("prompt", "must not be an empty list")
        return self
