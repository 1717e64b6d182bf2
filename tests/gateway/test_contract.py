"""Auth, errors, models, probes, capacity: the contracts every route keeps."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from runtime.fleet.chutes import ChuteState
from runtime.http.engine_client import Endpoint
from tests.gateway.conftest import KEYS, Gateway, GatewayFactory, post_while_a_slot_is_held

USER = [{"role": "user", "content": "hi"}]
CHAT = {"model": "tiny", "messages": USER}


def assert_envelope(reply: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "detail"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert body["detail"] == error["message"] and error["message"]
    assert error["code"] is None or isinstance(error["code"], str)
    assert error["param"] == param
    assert "x-chutes-invocationid" in reply.headers
    return dict(error)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEYS[0]}"},
        {"Authorization": f"bearer {KEYS[0]}"},
        {"Authorization": KEYS[1]},
        {"X-API-Key": KEYS[1]},
    ],
)
def test_every_auth_header_form_is_accepted(gateway: Gateway, headers: dict[str, str]) -> None:
    with gateway.client(key=None) as client:
        assert client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "k"}])
def test_missing_or_wrong_keys_get_401(gateway: Gateway, headers: dict[str, str]) -> None:
    with gateway.client(key=None) as client:
        reply = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    error = assert_envelope(reply, 401)
    assert error["type"] == "authentication_error"
    assert reply.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Digest"])
def test_another_scheme_is_401_saying_what_is_expected(gateway: Gateway, scheme: str) -> None:
    with gateway.client(key=None) as client:
        reply = client.post("/v1/chat/completions", json=CHAT,
                            headers={"Authorization": f"{scheme} {KEYS[0]}"})  # fmt: skip
    error = assert_envelope(reply, 401)
    assert f"not the '{scheme}' scheme" in error["message"] and "Bearer <key>" in error["message"]


def test_probes_and_models_are_public_by_default(gateway: Gateway) -> None:
    with gateway.client(key=None) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").status_code == 200
        models = client.get("/v1/models").json()
    assert models["object"] == "list"
    tiny = next(m for m in models["data"] if m["id"] == "tiny")
    assert tiny["max_model_len"] == 512 and tiny["root"] == "/models/tiny"
    assert tiny["pricing"] == {"prompt": 0.5, "completion": 0.0}
    assert tiny["price"]["input"] == {"usd": 0.5, "tao": 0.0}


def test_models_can_require_a_key(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(public_models=False)
    with gateway.client(key=None) as client:
        assert_envelope(client.get("/v1/models"), 401)
        assert client.get("/ready").status_code == 200
    with gateway.client() as client:
        assert client.get("/v1/models").status_code == 200


def test_retrieve_model(gateway: Gateway) -> None:
    with gateway.client() as client:
        assert client.get("/v1/models/tiny").json()["id"] == "tiny"
        error = assert_envelope(client.get("/v1/models/nope"), 404, "model")
    assert error["code"] == "model_not_found"


def test_unknown_model_is_404(gateway: Gateway) -> None:
    with gateway.client() as client:
        reply = client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
    error = assert_envelope(reply, 404, "model")
    assert error["message"] == "model not found: gpt-9"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "temperature": 9}, "temperature"),
        ({**CHAT, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({**CHAT, "temprature": 0.5}, "temprature"),
        ({"messages": USER}, "model"),
    ],
)
def test_bad_input_is_400_naming_the_parameter(
    gateway: Gateway, body: dict[str, Any], param: str
) -> None:
    with gateway.client() as client:
        reply = client.post("/v1/chat/completions", json=body)
    assert_envelope(reply, 400, param)


def test_engine_extras_pass_and_fields_nobody_knows_are_refused(gateway: Gateway) -> None:
    # The fake engine's /openapi.json names top_k and min_p, as vLLM's does.
    with gateway.client() as client:
        ok = client.post("/v1/chat/completions", json={**CHAT, "top_k": 5, "min_p": 0.1})
        assert ok.status_code == 200
        reply = client.post("/v1/chat/completions", json={**CHAT, "top_kk": 5})
    error = assert_envelope(reply, 400, "top_kk")
    assert error["message"] == "Unrecognized request argument supplied: top_kk"


def test_openai_fields_the_engine_does_not_read_are_accepted_and_not_sent(
    gateway: Gateway, engines: dict[str, Endpoint]
) -> None:
    # The fake engine's schema leaves out store, metadata and service_tier (as vLLM 0.32's).
    extra = {"store": True, "metadata": {"k": "v"}, "service_tier": "auto", "top_k": 3}
    with gateway.client() as client:
        reply = client.post("/v1/chat/completions", json={**CHAT, **extra})
    assert reply.status_code == 200
    sent = httpx.get(engines["tiny"].address + "/fake/stats").json()["last_body"]
    assert "top_k" in sent and not {"store", "metadata", "service_tier"} & set(sent)


def test_unknown_fields_pass_when_strictness_is_off(make_gateway: GatewayFactory) -> None:
    with make_gateway(strict_params=False).client() as client:
        reply = client.post("/v1/chat/completions", json={**CHAT, "top_kk": True})
    assert reply.status_code == 200


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]"])
def test_bodies_that_are_not_json_objects_are_400(gateway: Gateway, content: bytes) -> None:
    with gateway.client() as client:
        reply = client.post("/v1/chat/completions", content=content)
    assert_envelope(reply, 400)


def test_oversized_bodies_are_413(make_gateway: GatewayFactory) -> None:
    with make_gateway(max_body_bytes=2048).client() as client:
        reply = client.post("/v1/chat/completions", json={**CHAT, "user": "x" * 4096})
    assert_envelope(reply, 413)


def test_unknown_routes_and_methods_use_the_envelope(gateway: Gateway) -> None:
    with gateway.client() as client:
        assert_envelope(client.get("/v1/nothing"), 404)
        assert_envelope(client.get("/v1/chat/completions"), 405)


def test_tokenize_round_trip(gateway: Gateway) -> None:
    with gateway.client() as client:
        tokens = client.post("/tokenize", json={"model": "tiny", "prompt": "héllo"}).json()
        assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] == 512
        text = client.post("/detokenize", json={"model": "tiny", "tokens": tokens["tokens"]})
    assert text.json() == {"prompt": "héllo"}


def test_a_chute_that_is_not_ready_answers_503(gateway: Gateway) -> None:
    chute = gateway.chutes.get("tiny")
    assert chute is not None
    chute.replicas[0].state = ChuteState.STARTING
    with gateway.client() as client:
        reply = client.post("/v1/chat/completions", json=CHAT)
        ready = client.get("/ready")
    error = assert_envelope(reply, 503)
    assert "No instances available" in error["message"] and reply.headers["retry-after"]
    assert ready.status_code == 503
    assert ready.json()["chutes"]["tiny"]["state"] == "starting"
    assert ready.json()["chutes"]["tiny"]["replicas"][0]["state"] == "starting"


def test_over_capacity_is_429_with_retry_after(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(concurrency=1)
    slow = {"model": "loose", "messages": [{"role": "user", "content": "a b c"}],
            "stream": True, "fake_delay": 0.3}  # fmt: skip
    reply = post_while_a_slot_is_held(gateway, slow)
    error = assert_envelope(reply, 429)
    assert error["code"] == "concurrency_limit_exceeded"
    assert reply.headers["retry-after"] == "1"
    assert reply.headers["x-chutes-conn-available"] == "0"
    chute = gateway.chutes.get("loose")
    assert chute is not None
    # The server gives the slot back just after the last byte leaves: allow it that moment.
    for _ in range(100):
        if chute.admission.used == 0 and chute.replicas[0].outstanding == 0:
            break
        time.sleep(0.02)
    assert (chute.admission.used, chute.replicas[0].outstanding) == (0, 0)


@pytest.mark.parametrize("path", ["/tokenize", "/detokenize"])
def test_tokenize_routes_take_an_admission_slot(make_gateway: GatewayFactory, path: str) -> None:
    gateway = make_gateway(concurrency=1)
    slow = {"model": "tiny", "messages": [{"role": "user", "content": "a b c"}],
            "stream": True, "fake_delay": 0.3}  # fmt: skip
    tokenize = {"model": "tiny", "prompt": "hi"}
    body = tokenize if path == "/tokenize" else {"model": "tiny", "tokens": [104]}
    assert_envelope(post_while_a_slot_is_held(gateway, slow, path, body), 429)
    with gateway.client() as client:
        assert client.post(path, json=body).status_code == 200
