"""`POST /v1/rerank` (Jina/Cohere style) and `POST /v1/score`, as vLLM serves them.

A query against documents, scored by a cross-encoder: rerank returns them best first with
`relevance_score`; score returns one score per pair, in order.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.protocol.common import PASSTHROUGH, ParamError

_OPEN = ConfigDict(extra="allow")


class RerankRequest(BaseModel):
    model_config = PASSTHROUGH

    model: str = Field(min_length=1)
    query: str | dict[str, Any]
    documents: str | dict[str, Any] | list[str | dict[str, Any]]
    top_n: int | None = Field(None, ge=0)
    return_documents: bool | None = None
    truncate_prompt_tokens: int | None = Field(None, ge=-1)

    @model_validator(mode="after")
    def _documents(self) -> RerankRequest:
        if self.documents in ([], "") or self.query == "":
            raise ParamError("documents" if self.query != "" else "query", "must not be empty")
        return self


class ScoreRequest(BaseModel):
    """Pairs to score. Engines spell the pairs their own ways (vLLM: `text_1`/`text_2`,
    `queries`/`documents`, `data_1`/`data_2`): those fields are the engine's to check, against
    the schema it publishes."""

    model_config = PASSTHROUGH

    model: str = Field(min_length=1)
    truncate_prompt_tokens: int | None = Field(None, ge=-1)


class RerankResult(BaseModel):
    model_config = _OPEN
    index: int
    relevance_score: float


class RerankResponse(BaseModel):
    model_config = _OPEN
    model: str
    results: list[RerankResult]


class ScoreData(BaseModel):
    model_config = _OPEN
    index: int
    score: float


class ScoreResponse(BaseModel):
    model_config = _OPEN
    model: str
    data: list[ScoreData]
