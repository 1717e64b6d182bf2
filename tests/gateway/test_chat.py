"""Chat and completions through the gateway to a fake engine server."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.gateway.conftest import Gateway, GatewayFactory, wait_until_abandoned

USER = [{"role": "user", "content": "hello brave new world"}]


def sse_events(text: str) -> list[Any]:
    frames = [f[len("data: ") :] for f in text.split("\n\n") if f.startswith("data: ")]
    return [f if f == "[DONE]" else json.loads(f) for f in frames]


def test_chat_relays_the_engine_reply_with_chutes_headers(gateway: Gateway) -> None:
    with gateway.client() as client:
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": USER},
            headers={"X-Request-Id": "req-7"},
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == "hello brave new world "
    assert body["model"] == "tiny"
    assert len(reply.headers["x-chutes-invocationid"]) == 32
    assert reply.headers["x-request-id"] == "req-7"
    assert reply.headers["x-chutes-conn-used"] == "1"
    assert reply.headers["x-chutes-conn-available"] == "7"
    assert reply.headers["x-chutes-conn-utilization"] == "0.12"


def test_streaming_is_relayed_with_a_usage_chunk(gateway: Gateway) -> None:
    request = {"model": "tiny", "messages": USER, "stream": True}
    with (
        gateway.client() as client,
        client.stream("POST", "/v1/chat/completions", json=request) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = sse_events(reply.read().decode())
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 4
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert text == "hello brave new world "


def test_max_tokens_reaches_the_engine(gateway: Gateway) -> None:
    with gateway.client() as client:
        reply = client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": USER, "max_tokens": 2}
        )
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == "hello brave "


def test_completions(gateway: Gateway) -> None:
    with gateway.client() as client:
        reply = client.post("/v1/completions", json={"model": "tiny", "prompt": "one two"})
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["text"] == "one two "


def test_thinking_suffix_routes_to_the_chute_under_its_served_name(gateway: Gateway) -> None:
    # The fake engine answers 404 for any model name but its own: a 200 proves the rewrite.
    with gateway.client() as client:
        reply = client.post(
            "/v1/chat/completions", json={"model": "tiny:THINKING", "messages": USER}
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "tiny"


def test_engine_errors_keep_their_status_and_message(gateway: Gateway) -> None:
    long_prompt = " ".join(["word"] * 600)
    with gateway.client() as client:
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": long_prompt}]},
        )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "maximum context length is 512" in error["message"]
    assert error["code"] is None and reply.json()["detail"] == error["message"]


def test_a_stream_the_engine_breaks_ends_with_an_error_event(gateway: Gateway) -> None:
    request = {
        "model": "tiny", "stream": True,
        "messages": [{"role": "user", "content": "a b FAIL_MIDSTREAM d e"}],
    }  # fmt: skip
    with (
        gateway.client() as client,
        client.stream("POST", "/v1/chat/completions", json=request) as reply,
    ):
        assert reply.status_code == 200
        events = sse_events(reply.read().decode())
    assert "[DONE]" not in events
    assert events[-1]["error"]["type"] == "upstream_error"
    assert "broke off the stream" in events[-1]["error"]["message"]


def test_client_disconnect_mid_stream_reaches_the_engine(
    gateway: Gateway, engines: dict[str, Any]
) -> None:
    stats_url = engines["loose"].address + "/fake/stats"
    before = httpx.get(stats_url).json()["streams_abandoned"]
    request = {
        "model": "loose", "stream": True, "fake_delay": 0.2,
        "messages": [{"role": "user", "content": " ".join(["w"] * 50)}],
    }  # fmt: skip
    with (
        gateway.client() as client,
        client.stream("POST", "/v1/chat/completions", json=request) as reply,
    ):
        next(reply.iter_raw())  # the stream has started
    # Leaving the block closed the client's connection mid-stream.
    wait_until_abandoned(stats_url, before)


def test_sglang_requests_carry_the_invocation_id_and_are_aborted_by_it(
    make_gateway: GatewayFactory, engines: dict[str, Any]
) -> None:
    gateway = make_gateway(strict_params=False)
    stats_url = engines["sg"].address + "/fake/stats"
    request = {
        "model": "sg", "stream": True, "fake_delay": 0.2,
        "messages": [{"role": "user", "content": " ".join(["w"] * 50)}],
    }  # fmt: skip
    with (
        gateway.client() as client,
        client.stream("POST", "/v1/chat/completions", json=request) as reply,
    ):
        invocation = reply.headers["x-chutes-invocationid"]
        next(reply.iter_raw())  # started; leaving the block disconnects
    for _ in range(50):
        if invocation in httpx.get(stats_url).json()["aborted"]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the gateway never called /abort_request with the request's rid")


def test_a_finished_sglang_request_is_not_aborted(
    gateway: Gateway, engines: dict[str, Any]
) -> None:
    with gateway.client() as client:
        reply = client.post("/v1/chat/completions", json={"model": "sg", "messages": USER})
    assert reply.status_code == 200
    time.sleep(0.2)
    aborted = httpx.get(engines["sg"].address + "/fake/stats").json()["aborted"]
    assert reply.headers["x-chutes-invocationid"] not in aborted
