"""model-lists: Chutes' `model: "a,b"` and its `:latency` / `:throughput` suffixes.

A list whose first name is served nowhere is answered by the next one, and the reply names
the model that served; a name with a speed suffix is served by that model.
"""

from __future__ import annotations

from typing import Any

from runtime.conformance.check import Check, Session, conforms, expect
from runtime.protocol.responses import CreateChatCompletionResponse

PROMPT = [{"role": "user", "content": "Say hello."}]
MISSING = "conformance-no-such-model"


def _served_by(session: Session, model: str) -> str:
    body: dict[str, Any] = {"model": model, "messages": PROMPT, "max_tokens": 4}
    reply = session.request("POST", "/v1/chat/completions", body)
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    served = conforms(CreateChatCompletionResponse, reply.json(), "a chat completion").model
    expect(served == session.model(), f"served by {session.model()}", served)
    return f"model {model!r} served by {served}"


def failover(session: Session) -> str:
    return _served_by(session, f"{MISSING},{session.model()}")


def suffix(session: Session) -> str:
    return _served_by(session, f"{session.model()},{MISSING}:latency")


CHECKS = [
    Check("model-lists", "failover", failover, "an unknown first model → the next one serves"),
    Check("model-lists", "latency", suffix, "a list ending in :latency is served"),
]
