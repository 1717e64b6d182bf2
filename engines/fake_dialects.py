"""The fake engine's Responses API and Anthropic Messages replies, whole and streamed.

Shaped as vLLM 0.32 shapes them (and as the official SDKs parse them): a Responses stream is
`response.created`, one `response.output_text.delta` per piece, `response.completed`; a
Messages stream is `message_start`, a text block's start/deltas/stop, `message_delta` with the
usage, `message_stop`. Every event names itself on an `event:` line.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any


def named_event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


def input_text(value: Any) -> str:
    """The last user text of chat or Messages `messages`, or of a Responses `input`."""
    if isinstance(value, str):
        return value
    for item in reversed(value if isinstance(value, list) else []):
        if not isinstance(item, dict) or item.get("role", "user") != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class ResponsesReply:
    """One Responses API answer from `pieces` (words), stored under its id when asked."""

    def __init__(self, model: str, pieces: list[str], prompt_tokens: int, finish: str) -> None:
        self.id = "resp_" + uuid.uuid4().hex
        self.item = "msg_" + uuid.uuid4().hex
        self.model, self.pieces = model, pieces
        self.created = int(time.time())
        self.status = "completed" if finish == "stop" else "incomplete"
        self.usage = {
            "input_tokens": prompt_tokens,
            "output_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
        }

    def whole(self, status: str | None = None) -> dict[str, Any]:
        text = "".join(self.pieces)
        message = {
            "type": "message",
            "id": self.item,
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "model": self.model,
            "status": status or self.status,
            "output": [message],
            "usage": self.usage,
            "error": None,
            "incomplete_details": None,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }

    async def events(self, delay: float) -> AsyncIterator[bytes]:
        started = {**self.whole("in_progress"), "output": [], "usage": None}
        yield named_event("response.created", {"response": started, "sequence_number": 0})
        for i, piece in enumerate(self.pieces, start=1):
            if delay:
                await asyncio.sleep(delay)
            yield named_event(
                "response.output_text.delta",
                {
                    "item_id": self.item,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                    "sequence_number": i,
                },
            )
        done = {"response": self.whole(), "sequence_number": len(self.pieces) + 1}
        yield named_event("response.completed", done)


class MessagesReply:
    """One Anthropic Messages answer from `pieces` (words)."""

    def __init__(self, model: str, pieces: list[str], prompt_tokens: int, finish: str) -> None:
        self.id = "msg_" + uuid.uuid4().hex
        self.model, self.pieces, self.prompt_tokens = model, pieces, prompt_tokens
        self.stop_reason = "end_turn" if finish == "stop" else "max_tokens"

    def _message(self, content: list[dict[str, Any]], output_tokens: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": output_tokens},
        }

    def whole(self) -> dict[str, Any]:
        message = self._message([{"type": "text", "text": "".join(self.pieces)}], len(self.pieces))
        return {**message, "stop_reason": self.stop_reason}

    async def events(self, delay: float) -> AsyncIterator[bytes]:
        yield named_event("message_start", {"message": self._message([], 0)})
        block = {"type": "text", "text": ""}
        yield named_event("content_block_start", {"index": 0, "content_block": block})
        for piece in self.pieces:
            if delay:
                await asyncio.sleep(delay)
            text = {"type": "text_delta", "text": piece}
            yield named_event("content_block_delta", {"index": 0, "delta": text})
        yield named_event("content_block_stop", {"index": 0})
        usage = {"input_tokens": self.prompt_tokens, "output_tokens": len(self.pieces)}
        delta: dict[str, Any] = {"stop_reason": self.stop_reason, "stop_sequence": None}
        yield named_event("message_delta", {"delta": delta, "usage": usage})
        yield named_event("message_stop", {})
