"""Pieces shared by the chat and completions request schemas."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Fields are validated; fields the schema does not name are kept so that engine-specific
# extras (top_k, min_p, chat_template_kwargs, …) can pass through after the route checks them
# against what the engine accepts.
PASSTHROUGH = ConfigDict(extra="allow")


class ParamError(ValueError):
    """A cross-field check failed; `param` names the field at fault, relative to the model."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class SamplingFields(BaseModel):
    """Sampling parameters common to /v1/chat/completions and /v1/completions."""

    model_config = PASSTHROUGH

    model: str = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1, le=128)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    user: str | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and any(s == "" for s in value):
            raise ValueError("stop sequences must not be empty strings")
        return value
