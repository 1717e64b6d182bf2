"""Token usage read off an engine's reply without parsing the whole of it.

Embedding replies can be megabytes of floats and streams thousands of events; the usage
object is near the end of both, so only the text from its last `"usage"` key on is decoded.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

import orjson

_KEY = b'"usage"'
# The usual shape: a flat object (vLLM's `prompt_tokens_details` is null unless it caches).
_FLAT = re.compile(rb"\s*:\s*(\{[^{}]*\})")
_DECODER = json.JSONDecoder()


class Usage(NamedTuple):
    """Token counts an engine reported for one request."""

    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens the engine's prefix cache served (0 when it does not say).
    cached_tokens: int = 0


def find_usage(data: bytes) -> Usage | None:
    """The last usage object in `data` (a JSON body or the tail of an SSE stream), if any."""
    at = data.rfind(_KEY)
    if at < 0:
        return None
    value = None
    flat = _FLAT.match(data, at + len(_KEY))  # the usual shape, parsed alone
    if flat is not None:
        try:
            value = orjson.loads(flat.group(1))
        except ValueError:
            pass
    if value is None:
        text = data[at + len(_KEY) :].decode("utf-8", "replace").lstrip()
        if not text.startswith(":"):
            return None
        try:
            value, _ = _DECODER.raw_decode(text[1:].lstrip())
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    # OpenAI's chat and completions name them prompt/completion; its Responses API and
    # Anthropic's Messages API name them input/output.
    # Anthropic counts cache reads and writes apart from its input tokens; rerank replies
    # only a total.
    prompt = value.get("prompt_tokens", value.get("input_tokens", value.get("total_tokens")))
    completion = value.get("completion_tokens", value.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    for name in ("cache_read_input_tokens", "cache_creation_input_tokens"):
        if isinstance(value.get(name), int):
            prompt += value[name]
    return Usage(prompt, completion, _cached(value))


def _cached(usage: dict[str, object]) -> int:
    """Cached prompt tokens as OpenAI's chat (`prompt_tokens_details`), its Responses API
    (`input_tokens_details`) or Anthropic's Messages (`cache_read_input_tokens`) say them."""
    for name in ("prompt_tokens_details", "input_tokens_details"):
        details = usage.get(name)
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            return int(details["cached_tokens"])
    read = usage.get("cache_read_input_tokens")
    return read if isinstance(read, int) else 0
