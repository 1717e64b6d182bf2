"""Image requests: Chutes' `POST /generate` and OpenAI's `POST /v1/images/generations`."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SIZE = re.compile(r"^(\d{2,4})x(\d{2,4})$")
SEED_MAX = 2**32 - 1


class GenerateRequest(BaseModel):
    """The Chutes diffusion template's parameters; unknown fields are refused, as there."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    model: str | None = Field(None, min_length=1)
    negative_prompt: str = ""
    width: int = Field(1024, ge=128, le=2048)
    height: int = Field(1024, ge=128, le=2048)
    num_inference_steps: int = Field(25, ge=1, le=50)
    guidance_scale: float = Field(7.5, ge=1, le=20)
    seed: int | None = Field(None, ge=0, le=SEED_MAX)


class ImageGenerationRequest(BaseModel):
    """OpenAI's request, for diffusion chutes; `seed` and the sampling fields are extensions."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    model: str | None = Field(None, min_length=1)
    n: int = Field(1, ge=1, le=10)
    size: str = "1024x1024"
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: str | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    negative_prompt: str = ""
    num_inference_steps: int = Field(25, ge=1, le=50)
    guidance_scale: float = Field(7.5, ge=1, le=20)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        match = _SIZE.match(value)
        if not match:
            raise ValueError("must be WIDTHxHEIGHT, e.g. 1024x1024")
        for side in map(int, match.groups()):
            if not 128 <= side <= 2048:
                raise ValueError("each side must be between 128 and 2048 pixels")
        return value

    @field_validator("response_format")
    @classmethod
    def _no_urls(cls, value: str) -> str:
        if value == "url":
            raise ValueError(
                "'url' is not supported: chutebox keeps no image store to serve URLs from; "
                "use 'b64_json'"
            )
        return value

    def dimensions(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)
