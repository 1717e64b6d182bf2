"""A prompt's token ids as the engine renders them, for matching its KV-cache events.

The engine's own `/tokenize` renders chat messages with the chat template, tools and
template arguments the chat route would use, and tokenizes with the same tokenizer, so its
ids are the ones its cache blocks hold. It is sent every field of the request that its
`/tokenize` reads, as its OpenAPI document lists them (vLLM 0.32: messages, tools,
chat_template, chat_template_kwargs, add_generation_prompt, continue_final_message,
add_special_tokens, mm_processor_kwargs, …), so what changes the rendering is read from the
engine, not restated here. One round trip per routed request (made by
`runtime.api.relay.request`), only for chutes that follow the events and prompts long
enough to share a block; any failure, or an answer slower than TIMEOUT, falls back to the
approximate match.
"""

from __future__ import annotations

from typing import Any

from runtime.fleet.backend import CHAT, COMPLETIONS
from runtime.protocol import fastjson

# A busy engine's API server can answer late; past this the request is routed by the
# approximate match instead (a wrong guess costs one prefill, a long wait costs every token).
TIMEOUT = 0.1


def tokenize_body(body: dict[str, Any], capability: str, accepted: frozenset[str]) -> bytes | None:
    """The /tokenize request for an engine-bound body (already rewritten for the engine):
    the body's fields that `accepted`, the engine's /tokenize fields, names."""
    if capability == CHAT:
        prompt_field = "messages"
    elif capability == COMPLETIONS and isinstance(body.get("prompt"), str):
        prompt_field = "prompt"
    else:
        return None
    if prompt_field not in accepted:
        return None
    return fastjson.dumps({k: v for k, v in body.items() if k in accepted})


def read_tokens(reply: bytes) -> list[int] | None:
    """The ids in a /tokenize reply, or None if it holds none."""
    try:
        tokens = fastjson.loads(reply).get("tokens")
    except (ValueError, AttributeError):
        return None
    return tokens if isinstance(tokens, list) else None
