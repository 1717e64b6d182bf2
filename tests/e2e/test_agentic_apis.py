"""OpenAI's Responses API and Anthropic's Messages API through chutebox to a real vLLM on CPU,
driven by the official Python SDKs (openai, anthropic)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import API_KEY, MODEL
from tests.support.servers import Served

pytestmark = [pytest.mark.engine, pytest.mark.slow]

HELLO = "Hello, who are you?"
# The SDK no longer takes sampling arguments (Anthropic's newest models fix them); vLLM still
# reads `temperature`, which the gateway passes on.
GREEDY = {"temperature": 0}
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def oai(vllm_gateway: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=vllm_gateway.base_url + "/v1", api_key=API_KEY) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def claude(vllm_gateway: Served) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=vllm_gateway.base_url, api_key=API_KEY) as sdk:
        yield sdk


def test_responses_create(oai: openai.OpenAI) -> None:
    reply = oai.responses.create(model=MODEL, input=HELLO, max_output_tokens=8, temperature=0)
    assert reply.object == "response" and reply.model == MODEL
    assert reply.output and reply.usage is not None
    assert 1 <= reply.usage.output_tokens <= 8
    again = oai.responses.retrieve(reply.id)  # vLLM keeps it; the gateway knows where
    assert again.id == reply.id and again.output_text == reply.output_text


def test_responses_stream_matches_the_whole_reply(oai: openai.OpenAI) -> None:
    kwargs: Any = {"model": MODEL, "input": HELLO, "max_output_tokens": 8, "temperature": 0}
    whole = oai.responses.create(**kwargs)
    events = list(oai.responses.create(**kwargs, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text


def test_messages_create_and_stream(claude: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": HELLO}]
    whole = claude.messages.create(model=MODEL, max_tokens=8, messages=messages, extra_body=GREEDY)
    assert whole.type == "message" and whole.role == "assistant"
    assert whole.stop_reason in ("end_turn", "max_tokens")
    assert 1 <= whole.usage.output_tokens <= 8
    with claude.messages.stream(
        model=MODEL, max_tokens=8, messages=messages, extra_body=GREEDY
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    assert [b.model_dump(exclude={"parsed_output"}) for b in final.content] == [
        b.model_dump() for b in whole.content
    ]


def test_messages_tool_use(claude: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = claude.messages.create(
        model=MODEL,
        max_tokens=60,
        messages=messages,
        extra_body=GREEDY,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    uses = [block for block in reply.content if block.type == "tool_use"]
    assert uses and uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict) and uses[0].input.get("city") in ("Paris", "Rome")
    assert reply.stop_reason == "tool_use"


def test_messages_count_tokens_agrees_with_the_engines_tokenizer(
    claude: anthropic.Anthropic, vllm_gateway: Served
) -> None:
    messages: Any = [{"role": "user", "content": HELLO}]
    counted = claude.messages.count_tokens(model=MODEL, messages=messages)
    created = claude.messages.create(model=MODEL, max_tokens=1, messages=messages)
    assert counted.input_tokens == created.usage.input_tokens > 0


def test_messages_errors_reach_the_sdk_as_anthropic_errors(claude: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": HELLO}]
    with pytest.raises(anthropic.BadRequestError) as too_long:
        claude.messages.create(model=MODEL, max_tokens=4096, messages=messages)
    assert too_long.value.body["type"] == "error"  # type: ignore[index]
    assert too_long.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
