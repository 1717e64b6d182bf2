"""A toy language model behind vLLM's chat and completions routes: deterministic, token by
token, and breakable on demand. A real small server (run it with `serve_in_thread`).

Its vocabulary is `VOCAB` made-up words; a text prompt's tokens are its words' ids, a chat is
rendered by a small template into tokens, and a completions prompt may be token ids. The next
token is a function of the last three, so an answer continued from any prefix of prompt +
answer is the rest of the answer uninterrupted, as a real model's at temperature 0. Like vLLM
it returns token ids when asked (`return_token_ids`: the prompt's in the first event, each
event's new ones in it) and puts the finish reason on the last token's event.

`cuts` (a list that several engines may share, as the replicas of one chute) makes the next
requests' connections drop, one per entry: a stream after that many events (0: before any),
a whole reply partway through its body.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from engines.worker import openapi_document
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from tests.support.asgi import read_body, serve_lifespan

VOCAB = [f"w{i}" for i in range(97)]
EOS, USER, ASSISTANT = 0, 1, 2
EXTENSIONS = ("return_token_ids", "top_k", "ignore_eos", "min_tokens")


def encode(text: str) -> list[int]:
    return [int(w[1:]) if w in VOCAB else 3 + sum(map(ord, w)) % 94 for w in text.split()]


def next_token(tokens: list[int]) -> int:
    a, b, c = ([0, 0, 0] + tokens)[-3:]
    return (a * 7 + b * 17 + c * 31 + len(tokens) % 5 + 11) % len(VOCAB)


def answer(prompt: list[int], max_tokens: int, ignore_eos: bool) -> tuple[list[int], str]:
    tokens, out = list(prompt), list[int]()
    while len(out) < max_tokens:
        token = next_token(tokens)
        tokens.append(token)
        out.append(token)
        if token == EOS and not ignore_eos:
            return out, "stop"
    return out, "length"


class ToyEngine:
    """The toy model's server; `requests` keeps every body it was sent."""

    def __init__(self, name: str = "toy", cuts: list[int] | None = None) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[bytes, bytes]] = []
        self.cuts = cuts if cuts is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        body = await read_body(receive)
        path = scope["path"]
        if path == "/openapi.json":
            bodies: dict[str, type[BaseModel]] = {
                "/v1/chat/completions": ChatCompletionRequest,
                "/v1/completions": CompletionRequest,
            }
            document = openapi_document("toy", bodies, dict.fromkeys(bodies, EXTENSIONS))
            await _json(send, 200, document)
        elif path in ("/health", "/v1/models"):
            await _json(send, 200, {"object": "list", "data": [{"id": self.name}]})
        elif path in ("/v1/chat/completions", "/v1/completions"):
            request = json.loads(body)
            self.requests.append(request)
            self.headers.append(dict(scope["headers"]))
            await self._generate(request, path.endswith("chat/completions"), send)
        else:
            await _json(send, 404, {"error": {"message": "not found"}})

    async def _generate(self, request: dict[str, Any], chat: bool, send: Send) -> None:
        prompt = self._prompt(request, chat)
        budget = request.get("max_completion_tokens", request.get("max_tokens")) or 16
        tokens, finish = answer(prompt, budget, bool(request.get("ignore_eos")))
        cut = self.cuts.pop(0) if self.cuts else None
        reply = _Reply(self.name, request, prompt, tokens, finish, chat)
        if request.get("stream"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            for i, event in enumerate(reply.events()):
                if cut is not None and i >= cut:
                    raise ConnectionAbortedError("toy engine: connection dropped on purpose")
                await asyncio.sleep(0)
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        whole = json.dumps(reply.whole()).encode()
        if cut is not None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(whole)),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": whole[:10], "more_body": True})
            raise ConnectionAbortedError("toy engine: connection dropped on purpose")
        await _json(send, 200, reply.whole())

    def _prompt(self, request: dict[str, Any], chat: bool) -> list[int]:
        if chat:
            tokens = []
            for message in request["messages"]:
                tokens += [USER if message["role"] == "user" else ASSISTANT]
                tokens += encode(str(message["content"]))
            return tokens + [ASSISTANT]
        prompt = request["prompt"]
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        return list(prompt) if isinstance(prompt, list) else encode(prompt)


class _Reply:
    def __init__(
        self,
        model: str,
        request: dict[str, Any],
        prompt: list[int],
        tokens: list[int],
        finish: str,
        chat: bool,
    ) -> None:
        self.model, self.request, self.prompt = model, request, prompt
        self.tokens, self.finish, self.chat = tokens, finish, chat
        self.ids = bool(request.get("return_token_ids"))
        self.envelope = {
            "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        self.usage = {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(tokens),
            "total_tokens": len(prompt) + len(tokens),
        }

    def whole(self) -> dict[str, Any]:
        text = "".join(" " + VOCAB[t] for t in self.tokens)
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "finish_reason": self.finish,
                "message": {"role": "assistant", "content": text},
            }
        else:
            choice = {"index": 0, "text": text, "finish_reason": self.finish}
        kind = "chat.completion" if self.chat else "text_completion"
        return {**self.envelope, "object": kind, "choices": [choice], "usage": self.usage}

    def events(self) -> list[bytes]:
        events = []
        if self.chat:
            first: dict[str, Any] = {
                **self.envelope,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            }
            if self.ids:
                first["prompt_token_ids"] = self.prompt
            events.append(first)
        for i, token in enumerate(self.tokens):
            last = i == len(self.tokens) - 1
            choice: dict[str, Any] = {"index": 0}
            if self.chat:
                choice["delta"] = {"content": " " + VOCAB[token]}
            else:
                choice["text"] = " " + VOCAB[token]
            choice["finish_reason"] = self.finish if last else None
            if self.ids:
                choice["token_ids"] = [token]
                if not self.chat and i == 0:
                    choice["prompt_token_ids"] = self.prompt
            events.append({**self.envelope, "choices": [choice]})
        if (self.request.get("stream_options") or {}).get("include_usage"):
            events.append({**self.envelope, "choices": [], "usage": self.usage})
        return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [
            b"data: [DONE]\n\n"
        ]


async def _json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
