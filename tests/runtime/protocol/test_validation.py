from typing import Any

import pytest

from runtime.errors import InvalidRequestError
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.protocol.embeddings import EmbeddingRequest
from runtime.protocol.tokenize import TokenizeRequest
from runtime.protocol.validation import parse_body, validate

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": USER, **fields}


def param_of(model: Any, data: dict[str, Any]) -> str | None:
    """The parameter a refusal names."""
    with pytest.raises(InvalidRequestError) as info:
        validate(model, data)
    assert info.value.status_code == 400
    return info.value.param


def passes(model: Any, data: dict[str, Any]) -> None:
    validate(model, data)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": -1}, "max_completion_tokens"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"n": 0}, "n"),
        ({"stop": [""]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"seed": "x"}, "seed"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": "yes"}, "stream"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        ({"tool_choice": "sometimes", "tools": [TOOL]}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tool_choice": {"type": "function", "function": {"name": "other"}}, "tools": [TOOL]},
            "tool_choice",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": ""}, "model"),
    ],
)
def test_bad_chat_parameters_are_named(fields: dict[str, Any], param: str) -> None:
    assert param_of(ChatCompletionRequest, chat(**fields)) == param


def test_missing_fields_are_named() -> None:
    assert param_of(ChatCompletionRequest, {"messages": USER}) == "model"
    assert param_of(ChatCompletionRequest, {"model": "m"}) == "messages"
    assert param_of(CompletionRequest, {"model": "m"}) == "prompt"


def test_valid_chat_requests_pass() -> None:
    passes(ChatCompletionRequest, chat(temperature=0, stop="x", n=2, seed=1, user="u"))
    passes(ChatCompletionRequest, chat(tools=[TOOL], tool_choice="auto", top_k=5))
    passes(
        ChatCompletionRequest,
        chat(
            messages=[
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                {"role": "tool", "content": "no id: the engine decides, as on Chutes"},
            ],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
            stream=True, stream_options={"include_usage": True},
        ),
    )  # fmt: skip


def test_completion_prompts() -> None:
    for prompt in ("a", ["a", "b"], [1, 2], [[1], [2]]):
        passes(CompletionRequest, {"model": "m", "prompt": prompt})
    assert param_of(CompletionRequest, {"model": "m", "prompt": []}) == "prompt"
    assert param_of(CompletionRequest, {"model": "m", "prompt": "a", "logprobs": 30}) == "logprobs"


def test_tokenize_takes_exactly_one_input() -> None:
    passes(TokenizeRequest, {"model": "m", "prompt": "x"})
    passes(TokenizeRequest, {"model": "m", "messages": USER})
    assert param_of(TokenizeRequest, {"model": "m"}) == "prompt"


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b"\xff"])
def test_bodies_that_are_not_json_objects(body: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        parse_body(body)


def test_embedding_inputs() -> None:
    for value in ("a", ["a", "b"], [1, 2], [[1], [2]]):
        passes(EmbeddingRequest, {"model": "m", "input": value})
    assert param_of(EmbeddingRequest, {"model": "m", "input": ["a", ""]}) == "input[1]"
    assert param_of(EmbeddingRequest, {"model": "m", "input": ""}) == "input"
    assert param_of(EmbeddingRequest, {"model": "m", "input": "a", "dimensions": 0}) == "dimensions"
