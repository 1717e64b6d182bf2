"""End-to-end encryption through the real gateway, with the published client unchanged
(`chutes-e2ee` 0.1.0 under the OpenAI SDK), and the refusals a client can provoke."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest
from chutes_e2ee import ChutesE2EETransport
from openai import OpenAI

from runtime.protocol.e2ee import open_reply, seal_request
from tests.gateway.conftest import KEYS, Gateway, GatewayFactory

SECRET_WORDS = "lighthouse keepers whisper"
ASK = [{"role": "user", "content": f"Tell me about {SECRET_WORDS}."}]


def openai_clients(gateway: Gateway, key: str = KEYS[0]) -> tuple[OpenAI, OpenAI]:
    """(in clear, end-to-end encrypted) clients of the same gateway."""
    sealed = httpx.Client(transport=ChutesE2EETransport(key, api_base=gateway.base_url))
    clear = OpenAI(api_key=key, base_url=gateway.base_url + "/v1", max_retries=0)
    e2ee = OpenAI(api_key=key, base_url=gateway.base_url + "/v1", http_client=sealed,
                  max_retries=0)  # fmt: skip
    return clear, e2ee


def test_the_published_client_gets_what_a_clear_request_gets(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    clear, e2ee = openai_clients(gateway)
    ask: dict[str, Any] = {"model": "tiny", "messages": ASK, "max_tokens": 8, "temperature": 0}
    with caplog.at_level(logging.DEBUG):
        whole = e2ee.chat.completions.create(**ask)
        plain = clear.chat.completions.create(**ask)
        assert whole.choices[0].message.content == plain.choices[0].message.content
        assert whole.usage is not None and whole.usage == plain.usage
        streamed = e2ee.chat.completions.create(
            **ask, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(streamed)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # The text is the fake engine's echo of the prompt: neither appears in any log line.
    assert SECRET_WORDS.split()[0] in text
    assert SECRET_WORDS.split()[0] not in caplog.text
    assert '"POST /e2e/invoke" 200' in caplog.text


def sealed_call(
    gateway: Gateway, key: str = KEYS[0], *, chute: str = "tiny", **changes: Any
) -> httpx.Response:
    """One sealed chat request made by hand, with `changes` to its headers or blob."""
    with gateway.client(key) as client:
        models = {m["id"]: m["chute_id"] for m in client.get("/v1/models").json()["data"]}
        chute_id = models.get(chute, chute)
        listing = client.get(f"/e2e/instances/{chute_id}")
        assert listing.status_code == 200, listing.text
        instance = listing.json()["instances"][0]
        public = base64.b64decode(instance["e2e_pubkey"])
        body = {"model": chute, "messages": ASK, "max_tokens": 4}
        blob, reply_keys = seal_request(public, changes.pop("payload", body))
        headers = {
            "X-Chute-Id": chute_id,
            "X-Instance-Id": instance["instance_id"],
            "X-E2E-Nonce": instance["nonces"][0],
            "X-E2E-Stream": "false",
            "X-E2E-Path": "/v1/chat/completions",
            "Content-Type": "application/octet-stream",
        }
        headers.update(changes.pop("headers", {}))
        blob = changes.pop("blob", lambda b: b)(blob)
        reply = client.post("/e2e/invoke", content=blob, headers=headers)
        if reply.status_code == 200:
            reply.extensions["opened"] = open_reply(reply_keys, reply.content)
        if changes.pop("twice", False):
            return client.post("/e2e/invoke", content=blob, headers=headers)
        return reply


def test_a_sealed_reply_opens_with_the_clients_key(gateway: Gateway) -> None:
    reply = sealed_call(gateway)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.extensions["opened"]["choices"][0]["message"]["content"]
    assert SECRET_WORDS.encode() not in reply.content


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"twice": True}, "X-E2E-Nonce"),
        ({"headers": {"X-E2E-Nonce": "f" * 32}}, "X-E2E-Nonce"),
        ({"headers": {"X-Instance-Id": "not-an-instance"}}, "X-Instance-Id"),
        ({"blob": lambda b: b[:-1] + bytes([b[-1] ^ 1])}, "body"),
        ({"headers": {"X-E2E-Path": "/v1/secret/thing"}}, "X-E2E-Path"),
        ({"headers": {"X-E2E-Nonce": ""}}, "X-E2E-Nonce"),
        ({"payload": {"model": "loose", "messages": ASK}}, "model"),
        ({"payload": {"model": "tiny", "messages": ASK, "temperature": "hot"}}, "temperature"),
    ],
)
def test_a_bad_sealed_request_is_a_400_naming_what_is_wrong(
    gateway: Gateway, changes: dict[str, Any], param: str
) -> None:
    reply = sealed_call(gateway, **changes)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_a_sealed_request_meets_the_keys_limits_like_any_other(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway(
        keys=[{"name": "q", "key": "sk-q", "quotas": {"tiny": 1}, "chutes": ["tiny"]}]
    )
    assert sealed_call(gateway, "sk-q").status_code == 200
    spent = sealed_call(gateway, "sk-q")
    assert spent.status_code == 402  # in clear: the client surfaces errors as they are
    assert "quota_reset_timestamp" in spent.json()["detail"]
    with gateway.client("sk-q") as client:
        assert client.get("/e2e/instances/loose").status_code == 404  # not this key's
        usage = client.get("/users/me/usage").json()["data"]
    assert usage[0]["requests"] == 1 and usage[0]["output_tokens"] > 0
    with gateway.client("nope") as stranger:
        assert stranger.get("/e2e/instances/tiny").status_code == 401
        assert stranger.post("/e2e/invoke", content=b"x").status_code == 401
