"""The same request bodies sent to real vLLM directly and through chutebox: what the engine
accepts, chutebox accepts with the same answer; what it refuses, chutebox refuses with a 4xx.

Documented differences, and only these (README, "Request fields"): a field that neither
OpenAI's API nor the engine's own /openapi.json names is refused by chutebox (400
`unknown_parameter`: a typo, or a field this vLLM no longer reads, such as `guided_choice`)
where vLLM ignores it; and the Chutes rewrites (`logprobs` gets `top_logprobs: 1`; streams get
their usage chunk), under which the generated text stays the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.protocol.fields import EngineFields, openai_fields
from tests.e2e.conftest import API_KEY, MODEL
from tests.support.servers import Served, engine_socket, vllm_pid

pytestmark = [pytest.mark.engine, pytest.mark.slow]

USER = [{"role": "user", "content": "Say something."}]
CHAT = {"model": MODEL, "messages": USER, "max_tokens": 8, "temperature": 0}
TEXT = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
    "required": ["city"]}}}  # fmt: skip
HISTORY = [*USER, {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1",
           "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
           {"role": "tool", "content": "sunny"}]  # fmt: skip
CHOICE = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
          "required": ["answer"], "additionalProperties": False}  # fmt: skip

BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("chat", "plain", CHAT),
    ("chat", "sampling extras", {**CHAT, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1}),
    ("chat", "min_tokens and ignore_eos", {**CHAT, "min_tokens": 4, "ignore_eos": True}),
    ("chat", "stop strings", {**CHAT, "stop": ["."], "include_stop_str_in_output": True}),
    ("chat", "stop token ids", {**CHAT, "stop_token_ids": [2], "skip_special_tokens": False}),
    ("chat", "seeded sampling", {**CHAT, "temperature": 0.8, "seed": 7}),
    ("chat", "n", {**CHAT, "n": 2}),
    ("chat", "max_completion_tokens", {**{k: v for k, v in CHAT.items() if k != "max_tokens"},
                                       "max_completion_tokens": 8}),
    ("chat", "json_object", {**CHAT, "response_format": {"type": "json_object"}}),
    ("chat", "json_schema", {**CHAT, "max_tokens": 40, "response_format": {
        "type": "json_schema", "json_schema": {"name": "a", "schema": CHOICE}}}),
    ("chat", "structured_outputs choice", {**CHAT, "structured_outputs": {
        "choice": ["yes", "no"]}}),
    ("chat", "structured_outputs regex", {**CHAT, "structured_outputs": {"regex": "[a-z]{3}"}}),
    ("chat", "named tool", {**CHAT, "max_tokens": 40, "tools": [TOOL], "tool_choice": {
        "type": "function", "function": {"name": "get_weather"}}}),
    ("chat", "tool_choice none", {**CHAT, "tools": [TOOL], "tool_choice": "none"}),
    ("chat", "tool message without tool_call_id", {**CHAT, "messages": HISTORY}),
    ("chat", "top_logprobs", {**CHAT, "logprobs": True, "top_logprobs": 2}),
    ("chat", "logprobs (rewritten)", {**CHAT, "logprobs": True}),
    ("chat", "OpenAI-only fields", {**CHAT, "store": True, "metadata": {"k": "v"},
                                    "service_tier": "auto", "user": "u"}),
    ("chat", "chat_template_kwargs", {**CHAT, "chat_template_kwargs": {"x": 1}}),
    ("chat", "stream", {**CHAT, "stream": True}),
    ("chat", "guided_choice (gone from vLLM)", {**CHAT, "guided_choice": ["yes", "no"]}),
    ("chat", "a typo", {**CHAT, "temprature": 0.5}),
    ("chat", "bad temperature", {**CHAT, "temperature": -1}),
    ("chat", "bad max_tokens", {**CHAT, "max_tokens": 0}),
    ("chat", "bad n", {**CHAT, "n": 0}),
    ("chat", "bad top_k", {**CHAT, "top_k": "many"}),
    ("chat", "bad response_format", {**CHAT, "response_format": {"type": "xml"}}),
    ("chat", "no messages", {"model": MODEL, "max_tokens": 8}),
    ("text", "plain", TEXT),
    ("text", "echo", {**TEXT, "echo": True}),
    ("text", "best_of (OpenAI-only here)", {**TEXT, "best_of": 1}),
    ("text", "logprobs", {**TEXT, "logprobs": 2}),
    ("text", "token ids", {**TEXT, "prompt": [1, 2, 3, 4]}),
    ("text", "stop and min_tokens", {**TEXT, "stop": [" "], "min_tokens": 2}),
    ("text", "no prompt", {"model": MODEL, "max_tokens": 8}),
    ("text", "bad logprobs", {**TEXT, "logprobs": -1}),
]  # fmt: skip
PATHS = {"chat": "/v1/chat/completions", "text": "/v1/completions"}
SCHEMAS = {"chat": ChatCompletionRequest, "text": CompletionRequest}


@pytest.fixture(scope="module")
def engine(vllm_gateway: Served) -> Iterator[httpx.Client]:
    """vLLM itself, on its socket, with its key (read from its environment)."""
    environ = Path(f"/proc/{vllm_pid(vllm_gateway)}/environ").read_bytes().split(b"\0")
    key = next(e.split(b"=", 1)[1] for e in environ if e.startswith(b"VLLM_API_KEY="))
    transport = httpx.HTTPTransport(uds=engine_socket(vllm_gateway, MODEL))
    headers = {"Authorization": f"Bearer {key.decode()}"}
    with httpx.Client(transport=transport, base_url="http://engine", headers=headers,
                      timeout=120) as client:  # fmt: skip
        yield client


def answer(reply: httpx.Response, stream: bool) -> list[tuple[Any, Any]]:
    """Each choice's text (or tool calls) and finish reason."""
    if stream:
        text, finish = "", None
        for line in reply.text.splitlines():
            if line.startswith("data: {"):
                for choice in httpx.Response(200, content=line[6:]).json()["choices"]:
                    text += choice["delta"].get("content") or ""
                    finish = choice["finish_reason"] or finish
        return [(text, finish)]
    out = []
    for choice in reply.json()["choices"]:
        message = choice.get("message")
        if message is None:
            out.append((choice["text"], choice["finish_reason"]))
            continue
        calls = [c["function"] for c in message.get("tool_calls") or []]
        out.append(((message.get("content"), calls), choice["finish_reason"]))
    return out


@pytest.mark.parametrize(("kind", "what", "body"), BODIES, ids=[f"{k}: {w}" for k, w, _ in BODIES])
def test_chutebox_accepts_and_refuses_what_vllm_does(
    vllm_gateway: Served, engine: httpx.Client, kind: str, what: str, body: dict[str, Any]
) -> None:
    path = PATHS[kind]
    direct = engine.post(path, json=body)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    via = httpx.post(vllm_gateway.base_url + path, json=body, headers=headers, timeout=120)
    document = engine.get("/openapi.json").json()
    known = EngineFields.from_openapi(document).known(path) or frozenset()
    unknown = [f for f in body if f not in known and f not in openai_fields(SCHEMAS[kind])]
    if direct.status_code >= 400:
        assert 400 <= via.status_code < 500, (direct.text, via.text)
    elif unknown:  # the one documented refusal: a field nobody here reads
        assert via.status_code == 400, via.text
        error = via.json()["error"]
        assert error["code"] == "unknown_parameter" and error["param"] == unknown[0]
    else:
        assert via.status_code == 200, via.text
        stream = bool(body.get("stream"))
        assert answer(via, stream) == answer(direct, stream)
