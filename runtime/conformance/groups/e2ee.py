"""e2ee: Chutes' end-to-end encryption, as its published client uses it.

The model's `/v1/models` entry carries a `chute_id`; `GET /e2e/instances/{chute_id}` lists
instances with an ML-KEM-768 public key and single-use nonces; a chat request sealed to one
(`POST /e2e/invoke`) comes back sealed to the client's key, whole or as a stream, and equal to
the same request in clear at temperature 0; a nonce used twice and a tampered request are
refused with a 4xx. Skipped where the server has no `/e2e` routes.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from runtime.conformance.check import Check, Failed, Session, Skipped, expect
from runtime.protocol import e2ee

PROMPT = [{"role": "user", "content": "Name three colours."}]
PUBLIC_KEY_SIZE = 1184


def _chute_id(session: Session) -> str:
    reply = session.request("GET", "/v1/models")
    expect(reply.status_code == 200, "200 from /v1/models", reply.status_code)
    for entry in reply.json().get("data", []):
        if entry.get("id") == session.model():
            chute_id = entry.get("chute_id")
            if not isinstance(chute_id, str) or not chute_id:
                raise Skipped("no chute_id in /v1/models: no Chutes E2EE here")
            return chute_id
    raise Failed(f"{session.model()} in /v1/models", reply.text[:300])


def _instance(session: Session) -> tuple[str, dict[str, Any]]:
    if not e2ee.available():
        raise Skipped(e2ee.INSTALL_HINT)
    chute_id = _chute_id(session)
    reply = session.request("GET", f"/e2e/instances/{chute_id}")
    if reply.status_code in (404, 501) and "instances" not in reply.text:
        raise Skipped(f"no E2EE here ({reply.status_code})")
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    listing = reply.json()
    instances = listing.get("instances") or []
    expect(bool(instances), "at least one instance", listing)
    expect(isinstance(listing.get("nonce_expires_in"), int), "nonce_expires_in", listing)
    return chute_id, instances[0]


def _invoke(
    session: Session, chute_id: str, instance: dict[str, Any], body: dict[str, Any], nonce: str
) -> tuple[Any, e2ee.KeyPair]:
    public = base64.b64decode(instance["e2e_pubkey"])
    blob, keys = e2ee.seal_request(public, body)
    headers = {
        **session.auth(),
        "X-Chute-Id": chute_id,
        "X-Instance-Id": instance["instance_id"],
        "X-E2E-Nonce": nonce,
        "X-E2E-Stream": str(bool(body.get("stream"))).lower(),
        "X-E2E-Path": "/v1/chat/completions",
        "Content-Type": "application/octet-stream",
    }
    return session.request("POST", "/e2e/invoke", headers=headers, content=blob), keys


def _clear(session: Session) -> str:
    body = {"model": session.model(), "messages": PROMPT, "max_tokens": 12, "temperature": 0}
    reply = session.request("POST", "/v1/chat/completions", body)
    expect(reply.status_code == 200, "200 in clear", reply.status_code)
    return str(reply.json()["choices"][0]["message"]["content"])


def instances(session: Session) -> str:
    _, instance = _instance(session)
    key = base64.b64decode(instance["e2e_pubkey"])
    expect(len(key) == PUBLIC_KEY_SIZE, f"a {PUBLIC_KEY_SIZE}-byte key", len(key))
    expect(bool(instance.get("nonces")), "nonces", instance)
    return f"instance {instance['instance_id']}, {len(instance['nonces'])} nonces"


def whole(session: Session) -> str:
    chute_id, instance = _instance(session)
    body = {"model": session.model(), "messages": PROMPT, "max_tokens": 12, "temperature": 0}
    reply, keys = _invoke(session, chute_id, instance, body, instance["nonces"][0])
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    opened = e2ee.open_reply(keys, reply.content)
    text = opened["choices"][0]["message"]["content"]
    expect(text == _clear(session), "the answer in clear", text)
    return f"sealed reply opened: {text!r}"


def stream(session: Session) -> str:
    chute_id, instance = _instance(session)
    body = {"model": session.model(), "messages": PROMPT, "max_tokens": 12, "temperature": 0}
    body["stream"] = True
    reply, keys = _invoke(session, chute_id, instance, body, instance["nonces"][0])
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    key, parts = None, []
    for line in reply.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if "e2e_init" in event:
            key = e2ee.stream_key(keys, event["e2e_init"])
        elif "e2e" in event:
            expect(key is not None, "e2e_init first", event)
            assert key is not None
            chunk = json.loads(e2ee.open_event(key, event["e2e"]).removeprefix("data: "))
            parts += [c["delta"].get("content") or "" for c in chunk.get("choices", [])]
    text = "".join(parts)
    expect(text == _clear(session), "the answer in clear", text)
    return f"sealed stream opened: {text!r}"


def replay(session: Session) -> str:
    chute_id, instance = _instance(session)
    body = {"model": session.model(), "messages": PROMPT, "max_tokens": 2}
    nonce = instance["nonces"][0]
    first, _ = _invoke(session, chute_id, instance, body, nonce)
    expect(first.status_code == 200, "200 the first time", first.status_code)
    again, _ = _invoke(session, chute_id, instance, body, nonce)
    expect(400 <= again.status_code < 500, "a 4xx for a nonce used twice", again.status_code)
    return f"nonce used twice → {again.status_code}"


def tampered(session: Session) -> str:
    chute_id, instance = _instance(session)
    other = dict(instance, e2e_pubkey=base64.b64encode(e2ee.new_keypair().public).decode())
    body = {"model": session.model(), "messages": PROMPT, "max_tokens": 2}
    reply, _ = _invoke(session, chute_id, other, body, instance["nonces"][0])
    expected = "a 4xx for a blob sealed to another key"
    expect(400 <= reply.status_code < 500, expected, reply.status_code)
    return f"sealed to another key → {reply.status_code}"


CHECKS = [
    Check("e2ee", "instances", instances, "instances with ML-KEM-768 keys and nonces"),
    Check("e2ee", "whole", whole, "a sealed chat reply equals the reply in clear"),
    Check("e2ee", "stream", stream, "a sealed chat stream equals the reply in clear"),
    Check("e2ee", "replay", replay, "a nonce used twice → 4xx"),
    Check("e2ee", "tampered", tampered, "a request sealed to another key → 4xx"),
]
