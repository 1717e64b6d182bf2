"""A fast fake OpenAI upstream for the proxy bench: raw ASGI, canned bytes, no parsing.

    uvicorn bench.upstream:app --loop uvloop --http httptools --no-access-log

Non-streaming chat answers one fixed completion with usage; `"stream": true` in the body gets
CHUNKS chunk events, a usage event and `[DONE]`, each event its own write, as an engine sends
them, all at once — or, with `"user": "paced"`, a pause of PACE seconds after the first, as an
engine computes its second token after the first. The point is to cost as little as
possible, so the proxies' own cost shows.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

CHUNKS = 1000
PACE = 0.001
MODEL = "bench"
_COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": MODEL,
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Paris is the capital of France."}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
}  # fmt: skip
COMPLETION = json.dumps(_COMPLETION).encode()
_BASE = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": MODEL}


def _chunk(i: int) -> bytes:
    # Each chunk different: LiteLLM ends a stream after 100 identical chunks (its loop guard).
    delta = {"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": None}
    return b"data: " + json.dumps({**_BASE, "choices": [delta]}).encode() + b"\n\n"


CHUNK_LIST = [_chunk(i) for i in range(CHUNKS)]
TAIL = (
    b"data: " + json.dumps({**_BASE, "choices": [], "usage": {
        "prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}}).encode()
    + b"\n\ndata: [DONE]\n\n"
)  # fmt: skip
MODELS = json.dumps({"object": "list", "data": [
    {"id": MODEL, "object": "model", "created": 1, "owned_by": "bench"}]}).encode()  # fmt: skip
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        await _whole(send, MODELS if scope["path"].startswith("/v1/models") else b"{}")
    elif b'"stream": true' in body or b'"stream":true' in body:
        await send({"type": "http.response.start", "status": 200, "headers": SSE})
        paced = b'"paced"' in body
        for i, chunk in enumerate(CHUNK_LIST):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if paced and i == 0:
                await asyncio.sleep(PACE)
        await send({"type": "http.response.body", "body": TAIL})
    else:
        await _whole(send, COMPLETION)


async def _whole(send: Any, body: bytes) -> None:
    headers = [*JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
