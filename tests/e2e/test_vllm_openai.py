"""The official OpenAI SDK against chutebox in front of a real vLLM engine on CPU."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from runtime.conformance.groups.tools import ANSWER, WEATHER
from tests.e2e.conftest import API_KEY, MODEL, OTHER_KEY, SIDE
from tests.support.servers import Served

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# The same tool and schema the conformance kit uses.
WEATHER_TOOL: Any = WEATHER
ANSWER_SCHEMA = ANSWER
HELLO: Any = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture(scope="module")
def client(vllm_gateway: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=vllm_gateway.base_url + "/v1", api_key=API_KEY) as sdk:
        yield sdk


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL, SIDE]
    extra = models[0].model_extra or {}
    assert extra["max_model_len"] == 2048
    assert extra["pricing"] == {"prompt": 0.0, "completion": 0.0}


def test_chat_non_stream(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=8, temperature=0, seed=1
    )
    assert reply.model == MODEL and reply.object == "chat.completion"
    choice = reply.choices[0]
    assert choice.finish_reason in ("length", "stop")
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert 1 <= reply.usage.completion_tokens <= 8


def test_chat_stream_gets_usage_without_asking(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=6, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens >= 1
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=6, temperature=0)
    assert text == whole.choices[0].message.content


def test_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="The capital of", max_tokens=5)
    assert reply.object == "text_completion" and reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_tokenize_round_trip(vllm_gateway: Served) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=vllm_gateway.base_url, headers=headers) as http:
        tokens = http.post("/tokenize", json={"model": MODEL, "prompt": "Paris is sunny"}).json()
        assert tokens["count"] == len(tokens["tokens"]) > 0
        assert tokens["max_model_len"] == 2048
        text = http.post("/detokenize", json={"model": MODEL, "tokens": tokens["tokens"]})
    assert text.json()["prompt"].strip() == "Paris is sunny"


def test_named_tool_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
    )
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["city"] in ("Paris", "Rome")


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True},
        },
        max_tokens=40,
        temperature=0,
    )
    data = json.loads(reply.choices[0].message.content or "")
    assert data["answer"] in ("yes", "no") and 0 <= data["count"] <= 9


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {API_KEY}"},
        {"Authorization": OTHER_KEY},
        {"X-API-Key": OTHER_KEY},
    ],
)
def test_every_auth_header_form(vllm_gateway: Served, headers: dict[str, str]) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 1}
    reply = httpx.post(
        vllm_gateway.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=60
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-chutes-invocationid"]


def test_wrong_key_is_401(vllm_gateway: Served) -> None:
    with openai.OpenAI(base_url=vllm_gateway.base_url + "/v1", api_key="wrong") as sdk:
        with pytest.raises(openai.AuthenticationError) as info:
            sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_input_is_400_with_param(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    request: dict[str, Any] = {"model": MODEL, "messages": HELLO, **fields}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**request)
    assert info.value.param == param


def test_engine_rejection_keeps_vllms_message(client: openai.OpenAI) -> None:
    long_text = "Paris is sunny today. " * 800
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": long_text}], max_tokens=4
        )
    assert "2048" in info.value.message  # vLLM names the model's context length


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert info.value.code == "model_not_found"
    assert "model not found: no-such-model" in info.value.message


def test_engine_log_is_forwarded_with_the_chute_prefix(vllm_gateway: Served) -> None:
    assert f"[{MODEL}]" in vllm_gateway.log_text()
