"""The Responses and Messages routes through the gateway, driven by the official SDKs
(OpenAI's and Anthropic's Python clients) against fake engines shaped as vLLM answers."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from runtime.fleet.chutes import ChuteState, Replica
from tests.gateway.conftest import KEYS, Gateway, GatewayFactory, wait_until_abandoned
from tests.support.servers import fake_engine

ASK = "tell me about the sea"


def oai(gateway: Gateway, key: str = KEYS[0]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def claude(gateway: Gateway, key: str = KEYS[0]) -> anthropic.Anthropic:
    # The SDK sends the key as `x-api-key` and `anthropic-version` with every request.
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


def test_responses_create_whole_and_streamed(gateway: Gateway) -> None:
    with oai(gateway) as client:
        whole = client.responses.create(model="tiny", input=ASK)
        events = list(client.responses.create(model="tiny", input=ASK, stream=True))
    assert whole.output_text == "tell me about the sea "
    assert whole.usage is not None and whole.usage.input_tokens == 5
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == whole.output_text


def test_a_stored_response_is_retrieved_through_the_chute_that_made_it(gateway: Gateway) -> None:
    with oai(gateway) as client:
        made = client.responses.create(model="tiny", input=ASK)
        again = client.responses.retrieve(made.id)
    assert again.id == made.id and again.output_text == made.output_text
    with gateway.client() as http:
        cancelled = http.post(f"/v1/responses/{made.id}/cancel")
        missing = http.get("/v1/responses/resp_nothing_like_it")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "response_id"


def test_a_continued_response_goes_to_the_replica_that_holds_the_first(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway()
    chute = gateway.chutes.get("tiny")
    assert chute is not None
    with fake_engine("tiny") as second, oai(gateway) as client:
        chute.replicas.append(Replica(1, state=ChuteState.READY, endpoint=second))
        first = client.responses.create(model="tiny", input=ASK)
        holder = next(r for r in chute.replicas if r.outstanding == 0 and r.index == 0)
        holder.outstanding += 5  # least-outstanding alone would now send follow-ups elsewhere
        previous = first.id
        for turn in range(4):
            reply = client.responses.create(
                model="tiny", input=f"and {turn}", previous_response_id=previous
            )
            previous = reply.id
        holder.outstanding -= 5
        assert client.responses.retrieve(previous).output_text == "and 3 "


def test_messages_create_whole_streamed_and_counted(gateway: Gateway) -> None:
    messages = [{"role": "user", "content": ASK}]
    with claude(gateway) as client:
        whole = client.messages.create(model="tiny", max_tokens=64, messages=messages)  # type: ignore[arg-type]
        with client.messages.stream(model="tiny", max_tokens=64, messages=messages) as stream:  # type: ignore[arg-type]
            kinds = [event.type for event in stream]
            final = stream.get_final_message()
        counted = client.messages.count_tokens(model="tiny", messages=messages)  # type: ignore[arg-type]
    assert whole.content[0].type == "text" and whole.content[0].text == "tell me about the sea "
    assert whole.usage.input_tokens == 5 and whole.stop_reason == "end_turn"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert counted.input_tokens == 5


def test_messages_errors_are_in_anthropics_shape(gateway: Gateway) -> None:
    messages = [{"role": "user", "content": ASK}]
    with (
        claude(gateway, key="wrong") as stranger,
        pytest.raises(anthropic.AuthenticationError) as no_key,
    ):
        stranger.messages.create(model="tiny", max_tokens=8, messages=messages)  # type: ignore[arg-type]
    assert no_key.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid API key"},
    }
    with claude(gateway) as client, pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.create(model="nope", max_tokens=8, messages=messages)  # type: ignore[arg-type]
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with gateway.client() as http:
        missing = http.post("/v1/messages", json={"model": "tiny", "messages": messages})
    assert missing.status_code == 400
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in missing.json()["error"]["message"]


def test_the_openai_routes_keep_openais_error_shape(gateway: Gateway) -> None:
    with gateway.client(key="wrong") as http:
        reply = http.post("/v1/responses", json={"model": "tiny", "input": ASK})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"


def test_a_route_the_chutes_engine_lacks_is_a_400_naming_what_it_serves(gateway: Gateway) -> None:
    with gateway.client() as http:
        rerank = http.post("/v1/rerank", json={"model": "tiny", "query": "q", "documents": ["d"]})
        sglang = http.post(
            "/v1/messages",
            json={"model": "sg", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
        )
    error = rerank.json()["error"]
    assert rerank.status_code == 400 and error["code"] == "unsupported_route"
    assert "tiny" in error["message"] and "/v1/chat/completions" in error["message"]
    assert "/v1/messages" in error["message"]  # the fake engine behind `tiny` publishes it
    assert sglang.status_code == 400 and sglang.json()["type"] == "error"
    assert "engine sglang" in sglang.json()["error"]["message"]


def test_usage_of_the_new_routes_reaches_the_metrics(gateway: Gateway) -> None:
    with oai(gateway) as client:
        client.responses.create(model="tiny", input=ASK)
    with claude(gateway) as other:
        other.messages.create(
            model="tiny", max_tokens=64, messages=[{"role": "user", "content": ASK}]
        )
    metrics = httpx.get(gateway.base_url + "/metrics").text
    prompt = [
        line
        for line in metrics.splitlines()
        if line.startswith("chutebox_prompt_tokens_total") and 'chute="tiny"' in line
    ]
    assert prompt and float(prompt[0].split()[-1]) == 10


def test_the_messages_schemas_declare_every_field_of_anthropics_sdk() -> None:
    from anthropic.types import message_count_tokens_params, message_create_params

    from runtime.protocol.messages import CountMessageTokensParams, CreateMessageParams

    create = message_create_params.MessageCreateParamsBase.__annotations__
    count = message_count_tokens_params.MessageCountTokensParams.__annotations__
    assert set(create) <= set(CreateMessageParams.model_fields)
    assert set(count) <= set(CountMessageTokensParams.model_fields)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/responses", {"input": " ".join(["w"] * 50)}),
        ("/v1/messages", {"max_tokens": 100, "messages": [{"role": "user", "content": "w " * 50}]}),
    ],
)
def test_a_client_leaving_a_stream_stops_the_engine(
    gateway: Gateway, engines: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    stats_url = engines["loose"].address + "/fake/stats"
    before = httpx.get(stats_url).json()["streams_abandoned"]
    request = {"model": "loose", "stream": True, "fake_delay": 0.2, **body}
    with gateway.client() as client, client.stream("POST", path, json=request) as reply:
        next(reply.iter_raw())  # the stream has started
    wait_until_abandoned(stats_url, before)
