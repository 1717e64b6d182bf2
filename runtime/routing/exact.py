"""A prompt's token ids as the engine renders them, for matching its KV-cache events.

The engine's own `/tokenize` renders chat messages with the chat template, tools and
template arguments the chat route would use, and tokenizes with the same tokenizer, so its
ids are the ones its cache blocks hold. One round trip per routed request, made only for
chutes whose engines publish events and prompts long enough to share a block; any failure
falls back to the approximate match.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from runtime import fastjson
from runtime.backend import CHAT, COMPLETIONS
from runtime.chutes import Endpoint
from runtime.upstream import Upstream

log = logging.getLogger("chutebox.routing")
# The chat fields vLLM's /tokenize reads that change what the chat template renders.
CHAT_FIELDS = ("messages", "tools", "chat_template", "chat_template_kwargs",
               "add_generation_prompt", "continue_final_message")  # fmt: skip
TIMEOUT = 2.0


def tokenize_body(body: dict[str, Any], capability: str) -> dict[str, Any] | None:
    """The /tokenize request for an engine-bound body (already rewritten for the engine)."""
    if capability == CHAT:
        return {"model": body.get("model"), **{k: body[k] for k in CHAT_FIELDS if k in body}}
    if capability == COMPLETIONS and isinstance(body.get("prompt"), str):
        return {"model": body.get("model"), "prompt": body["prompt"]}
    return None


async def prompt_tokens(
    upstream: Upstream, endpoint: Endpoint, body: dict[str, Any], capability: str
) -> list[int] | None:
    request = tokenize_body(body, capability)
    if request is None:
        return None
    try:
        response = await asyncio.wait_for(
            upstream.send(endpoint, "POST", "/tokenize", fastjson.dumps(request)), TIMEOUT
        )
        try:
            data = await asyncio.wait_for(response.read(), TIMEOUT)
        except BaseException:
            response.close()
            raise
        response.release()
        if response.status != 200:
            log.debug("tokenize answered %d: %s", response.status, data[:200])
            return None
        tokens = fastjson.loads(data).get("tokens")
    except Exception as exc:  # an engine busy or gone: route by the approximate match
        log.debug("tokenize failed: %s", exc)
        return None
    return tokens if isinstance(tokens, list) else None
