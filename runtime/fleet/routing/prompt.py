"""The text of a request that an engine's prefix cache can reuse, in the order the engine
renders it.

Matching runs on this text, not on tokens: the gateway has no tokenizer (it never loads an
engine library), and a chat template is a fixed function of the messages, so two requests
whose messages share a beginning render to prompts that share a beginning too. What the
template puts first is taken first: tools (templates render them into the system turn), then
the instructions or system prompt, then each message in order. The match is approximate where
a template renders per-request text early (a date, say); such a template defeats any router.
"""

from __future__ import annotations

from typing import Any

from runtime.fleet.backend import CHAT, COMPLETIONS, MESSAGES, RESPONSES
from runtime.protocol import fastjson

# Separators that cannot be confused with text sent in a field.
TURN = "\x1e"
PART = "\x1f"


def prompt_text(data: dict[str, Any], capability: str) -> str | None:
    """The request's cacheable text, or None for a route whose prompt is not cached."""
    if capability == CHAT:
        return _tools(data) + _turns(data.get("messages"))
    if capability == COMPLETIONS:
        return _completion_prompt(data.get("prompt"))
    if capability == RESPONSES:
        return _tools(data) + _text(data.get("instructions")) + TURN + _turns(data.get("input"))
    if capability == MESSAGES:
        return _tools(data) + _text(data.get("system")) + TURN + _turns(data.get("messages"))
    return None


def _tools(data: dict[str, Any]) -> str:
    tools = data.get("tools")
    return fastjson.dumps(tools).decode() + TURN if tools else ""


def _turns(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return ""
    turns = []
    for message in messages:
        if isinstance(message, dict):
            turns.append(f"{message.get('role', '')}{PART}{_text(message.get('content'))}")
            calls = message.get("tool_calls")
            if calls:
                turns.append(fastjson.dumps(calls).decode())
        else:
            turns.append(_text(message))
    return TURN.join(turns)


def _text(content: Any) -> str:
    """A message's content: a string, or its parts (text as is, anything else as JSON)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return PART.join(_part(p) for p in content)
    return fastjson.dumps(content).decode()


def _part(part: Any) -> str:
    text = part.get("text") if isinstance(part, dict) else None
    return text if isinstance(text, str) else fastjson.dumps(part).decode()


def _completion_prompt(prompt: Any) -> str | None:
    # A batch of prompts is several engine requests; the first one's prefix decides.
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):  # token ids
        return " ".join(str(t) for t in prompt)
    return None
