"""`GET /v1/models` entries: the engine's model card plus Chutes' price fields."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

# loaded, loading, sleeping or unloaded (an on-demand chute's engines asleep, or not
# running), or failed.
LoadState = Literal["loaded", "loading", "sleeping", "unloaded", "failed"]


class PriceAmount(BaseModel):
    usd: float
    tao: float


class Price(BaseModel):
    input: PriceAmount
    output: PriceAmount


class Pricing(BaseModel):
    prompt: float
    completion: float


class Model(BaseModel):
    """One served chute, as `/v1/models` lists it."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str | None = None
    # The model a LoRA adapter applies to (vLLM's card says so too).
    parent: str | None = None
    max_model_len: int | None = None
    # The chute's stable id (the platform's `/chutes/{chute-id}/...` names chutes by it).
    chute_id: str | None = None
    state: LoadState | None = None
    price: Price
    pricing: Pricing


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
