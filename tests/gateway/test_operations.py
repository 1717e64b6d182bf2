"""Limits, the wait queue, SSE keep-alives, draining and CORS, through the real gateway."""

from __future__ import annotations

import json

from tests.gateway.conftest import Gateway, GatewayFactory, post_while_a_slot_is_held
from tests.gateway.test_contract import CHAT, assert_envelope

SLOW = {"model": "loose", "stream": True, "fake_delay": 0.2,
        "messages": [{"role": "user", "content": "a b c d"}]}  # fmt: skip


def test_n_and_message_count_limits_are_400s_naming_them(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(max_n=2, max_messages=3)
    with gateway.client() as client:
        too_many = client.post("/v1/chat/completions", json={**CHAT, "n": 3})
        long_chat = client.post(
            "/v1/chat/completions", json={**CHAT, "messages": CHAT["messages"] * 4}
        )
        within = client.post("/v1/chat/completions", json={**CHAT, "n": 2})
    assert assert_envelope(too_many, 400, "n")["code"] == "limit_exceeded"
    assert assert_envelope(long_chat, 400, "messages")["code"] == "limit_exceeded"
    assert within.status_code == 200


def test_a_queued_request_waits_for_the_slot_instead_of_429(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(concurrency=1, queue_size=1, queue_timeout=10)
    queued = post_while_a_slot_is_held(gateway, SLOW)
    assert queued.status_code == 200
    chute = gateway.chutes.get("loose")
    assert chute is not None and chute.admission.waiting == 0


def test_a_queue_that_times_out_answers_429(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(concurrency=1, queue_size=1, queue_timeout=0.2)
    reply = post_while_a_slot_is_held(gateway, SLOW)
    error = assert_envelope(reply, 429)
    assert "in the queue" in error["message"] and reply.headers["retry-after"]


def test_long_silences_in_a_stream_carry_keepalive_comments(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(sse_keepalive=0.1)
    body = {**SLOW, "fake_delay": 0.5, "messages": [{"role": "user", "content": "a b"}]}
    with gateway.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as r:
        text = r.read().decode()
    frames = [f for f in text.split("\n\n") if f]
    assert ": keep-alive" in frames
    # Every other frame is intact, and the stream still ends properly.
    data = [f for f in frames if f != ": keep-alive"]
    assert all(f.startswith("data: ") for f in data) and data[-1] == "data: [DONE]"


def test_no_keepalives_when_turned_off(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(sse_keepalive=0)
    body = {**SLOW, "fake_delay": 0.3, "messages": [{"role": "user", "content": "a"}]}
    with gateway.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert ": keep-alive" not in r.read().decode()


def test_draining_refuses_new_work_and_turns_readiness_503(gateway: Gateway) -> None:
    gateway.chutes.draining = True
    with gateway.client() as client:
        refused = client.post("/v1/chat/completions", json=CHAT)
        ready = client.get("/ready")
        alive = client.get("/health")
    error = assert_envelope(refused, 503)
    assert "shutting down" in error["message"] and refused.headers["retry-after"]
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert alive.status_code == 200


def test_cors_is_off_unless_origins_are_configured(make_gateway: GatewayFactory) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    with make_gateway().client(key=None) as client:
        off = client.options("/v1/chat/completions", headers=preflight)
        plain = client.get("/v1/models", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in off.headers
    assert "access-control-allow-origin" not in plain.headers
    gateway = make_gateway(cors_origins=("https://app.example",))
    with gateway.client(key=None) as client:
        allowed = client.options("/v1/chat/completions", headers=preflight)
        other = client.options("/v1/chat/completions",
                               headers={**preflight, "Origin": "https://evil.example"})  # fmt: skip
    with gateway.client() as client:
        call = client.post("/v1/chat/completions", json=CHAT,
                           headers={"Origin": "https://app.example"})  # fmt: skip
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert other.status_code == 400
    assert call.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-chutes-invocationid" in call.headers["access-control-expose-headers"].lower()


def test_a_forced_stop_ends_streams_with_an_error_event_and_new_relays_with_503(
    gateway: Gateway,
) -> None:
    slow = {**SLOW, "messages": [{"role": "user", "content": "one two three four five six"}]}
    with (
        gateway.client() as client,
        client.stream("POST", "/v1/chat/completions", json=slow) as reply,
    ):
        lines = reply.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        relay = next(iter(gateway.chutes.relays))
        relay.get_loop().call_soon_threadsafe(gateway.chutes.stop_relays)
        rest = [line for line in lines if line.startswith("data:")]
    error = json.loads(rest[-1].removeprefix("data: "))["error"]
    assert error["code"] == "engine_unavailable" and "stopping" in error["message"]
    assert not gateway.chutes.relays
    with gateway.client() as client:
        refused = client.post("/v1/chat/completions", json={**CHAT, "model": "loose"})
    assert_envelope(refused, 503)
