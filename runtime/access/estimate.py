"""A request's prompt size in tokens, guessed before the engine counts it.

The gateway has no tokenizer, so a key's tokens-per-minute reservation is made from the text
a request carries: about four characters a token for English-like text (tiktoken's and
Llama's tokenizers both average near it), token ids counted as they are. Data URLs (images,
audio) are not text; their tokens are known only from the engine's usage, which settles the
reservation when the request ends.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
# Fields that name things rather than carry prompt text.
SKIPPED = frozenset({"model", "role", "type", "name", "tool_call_id", "id", "stop", "user"})


def estimate_tokens(data: Any) -> int:
    """At least 1: every request holds a place in the minute."""
    return max(1, _walk(data))


def _walk(value: Any) -> int:
    if isinstance(value, str):
        return 0 if value.startswith("data:") else -(-len(value) // CHARS_PER_TOKEN)
    if isinstance(value, list):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return len(value)  # token ids
        return sum(_walk(v) for v in value)
    if isinstance(value, dict):
        return sum(_walk(v) for k, v in value.items() if k not in SKIPPED)
    return 0
