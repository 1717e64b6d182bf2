"""The request models' mirrors accept exactly what the models accept."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError, field_validator, model_validator

from runtime.api.route_table import ENGINE_OPERATIONS
from runtime.protocol.check import mirror

MODELS = list(dict.fromkeys(op.request for op in ENGINE_OPERATIONS if op.request is not None))
USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
# A valid body per model, for the generated fields to change.
BASES: dict[str, dict[str, Any]] = {
    "ChatCompletionRequest": {"model": "m", "messages": USER},
    "CompletionRequest": {"model": "m", "prompt": "p"},
    "EmbeddingRequest": {"model": "m", "input": "a"},
    "CreateResponse": {"model": "m", "input": "hi"},
    "CreateMessageParams": {"model": "m", "messages": USER, "max_tokens": 8},
    "CountMessageTokensParams": {"model": "m", "messages": USER},
    "RerankRequest": {"model": "m", "query": "q", "documents": ["a", "b"]},
    "ScoreRequest": {"model": "m"},
    "ImageGenerationRequest": {"prompt": "a cat"},
    "GenerateRequest": {"prompt": "a cat"},
    "TokenizeRequest": {"model": "m", "prompt": "p"},
    "DetokenizeRequest": {"model": "m", "tokens": [1, 2]},
}
# Values that are right for some fields and wrong for others, and that cross-field checks
# look at (tool_choice against tools, stream_options against stream, …).
POOL: list[Any] = [
    None, True, False, 0, 1, 2, 3, -1, 21, 129, 0.5, 2.5, -3.0, "", "x", "m", "auto",
    "required", "none", "text", "json_object", "json_schema", "function", "256x256",
    "1024x1024", "b64_json", "url", "float", "base64", [], [""], ["a"], ["a", ""], [1, 2],
    [[1], [2]], {}, USER, [{"role": "user"}], [{"role": "robot", "content": "x"}],
    [{"role": "assistant", "content": None}], {"include_usage": True}, [TOOL],
    {"type": "function", "function": {"name": "get_weather"}},
    {"type": "function", "function": {"name": "other"}}, {"type": "json_schema"},
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}, {"type": "xml"},
    {"type": "enabled", "budget_tokens": 1024}, {"type": "auto"}, {"a": "b"}, {"50256": -100},
]  # fmt: skip


def model_accepts(model: type[BaseModel], body: dict[str, Any]) -> bool:
    try:
        model.model_validate(body, strict=True)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_request_model_is_mirrored(model: type[BaseModel]) -> None:
    # A model the mirror cannot follow is validated whole on every request: slower, so a
    # change that makes one fall back should be seen.
    assert mirror(model) is not None
    assert model_accepts(model, BASES[model.__name__])


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mirror_accepts_what_its_model_accepts_and_nothing_else(
    model: type[BaseModel], data: st.DataObject
) -> None:
    names = [*model.model_fields, "top_k", "unknown"]
    changes = data.draw(st.dictionaries(st.sampled_from(names), st.sampled_from(POOL), max_size=5))
    dropped = data.draw(st.sets(st.sampled_from(list(BASES[model.__name__])), max_size=1))
    body = {k: v for k, v in {**BASES[model.__name__], **changes}.items() if k not in dropped}
    shape = mirror(model)
    assert shape is not None
    assert shape.accepts(body) == model_accepts(model, body), body


def test_a_model_the_mirror_cannot_follow_is_left_to_itself() -> None:
    class TakesInfo(BaseModel):
        a: int = 0

        @field_validator("a")
        @classmethod
        def _a(cls, value: int, info: Any) -> int:
            return value

    class Before(BaseModel):
        a: int = 0

        @model_validator(mode="before")
        @classmethod
        def _raw(cls, data: Any) -> Any:
            return data

    assert mirror(TakesInfo) is None
    assert mirror(Before) is None


def test_model_validators_read_the_defaults_of_absent_fields() -> None:
    class Pair(BaseModel):
        low: int = 5
        high: int = 10

        @model_validator(mode="after")
        def _ordered(self) -> Pair:
            if self.low > self.high:
                raise ValueError("low above high")
            return self

    shape = mirror(Pair)
    assert shape is not None
    assert shape.accepts({"low": 7})
    assert not shape.accepts({"low": 11})  # against the default high
    assert not shape.accepts({"high": 4})  # against the default low
