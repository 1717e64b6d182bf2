"""Chutes model lists: `model: "a,b"` served by the first chute that can take the request
(known, ready, a slot free), `:latency` / `:throughput` ordering the list by the speeds the
gateway measured; the reply names the model that served."""

from __future__ import annotations

from typing import Any

from runtime.fleet.chutes import ChuteState
from tests.gateway.conftest import GatewayFactory, post_while_a_slot_is_held

CHAT: dict[str, Any] = {"model": "tiny", "messages": [{"role": "user", "content": "hi there"}]}


def test_an_unknown_name_in_a_list_is_passed_over(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    with gateway.client() as client:
        reply = client.post("/v1/chat/completions", json={**CHAT, "model": "nope, loose"})
        missing = client.post("/v1/chat/completions", json={**CHAT, "model": "nope,gone"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "loose"
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "model" and "nope,gone" in missing.text


def test_a_chute_at_capacity_or_not_ready_gives_way_to_the_next(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway(concurrency=1)
    stream = {**CHAT, "stream": True, "fake_delay": 0.5}
    reply = post_while_a_slot_is_held(gateway, stream, body={**CHAT, "model": "tiny,loose"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "loose"
    tiny = gateway.chutes.get("tiny")
    assert tiny is not None
    tiny.replicas[0].state = ChuteState.RESTARTING
    with gateway.client() as client:
        reply = client.post("/v1/chat/completions", json={**CHAT, "model": "tiny,loose"})
        alone = client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 200 and reply.json()["model"] == "loose"
    assert alone.status_code == 503  # one name is no list: its own answer stands


def test_the_first_that_can_serve_serves_in_the_lists_order(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    with gateway.client() as client:
        first = client.post("/v1/chat/completions", json={**CHAT, "model": "loose,tiny"})
        second = client.post("/v1/chat/completions", json={**CHAT, "model": "tiny,loose"})
    assert first.json()["model"] == "loose" and second.json()["model"] == "tiny"


def test_latency_and_throughput_order_the_list_by_measured_speed(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway()
    tiny, loose = gateway.chutes.get("tiny"), gateway.chutes.get("loose")
    assert tiny is not None and loose is not None
    tiny.speed.prompt_tps, loose.speed.prompt_tps = 5000.0, 800.0
    with gateway.client() as client:
        body = {**CHAT, "model": "loose,tiny:latency"}
        fast_prompt = client.post("/v1/chat/completions", json=body)
        # (each answer is measured too: the speeds are set just before the request)
        tiny.speed.output_tps, loose.speed.output_tps = 20.0, 90.0
        body = {**CHAT, "model": "tiny,loose:throughput"}
        fast_output = client.post("/v1/chat/completions", json=body)
    assert fast_prompt.status_code == 200, fast_prompt.text
    assert fast_prompt.json()["model"] == "tiny"
    assert fast_output.json()["model"] == "loose"


def test_served_requests_are_measured(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    loose = gateway.chutes.get("loose")
    assert loose is not None and loose.speed.output_tps is None
    with gateway.client() as client:
        streamed = client.post(
            "/v1/chat/completions", json={**CHAT, "model": "loose", "stream": True}
        )
        assert streamed.status_code == 200
    assert loose.speed.prompt_tps is not None and loose.speed.prompt_tps > 0
    assert loose.speed.output_tps is not None and loose.speed.output_tps > 0
