"""Continuing a chat or completions stream on another engine from what its client has seen.

The engine is asked for token ids (vLLM's `return_token_ids`: the prompt's in the first
event, each event's new ones in it). What the client received is kept as events; when the
engine dies, they give the prompt's ids, the ids generated so far and the stream's identity.
The continuation is a completions request for prompt + generated ids with the budget left,
sent to another replica; its events are rewritten into the original stream's (its id, its
kind of chunk), and its final usage into one counting the whole request. Token ids, not
text: text tokenized again need not give the same tokens, and the continuation would then
not be the answer the dead engine was writing, even at temperature 0.

What does not live in prompt + tokens cannot be continued: several choices or prompts,
log probabilities, echo, tools and structured output (the engine's parser or grammar state),
beam search; nor a chat stream whose deltas held reasoning or tool calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runtime.protocol import fastjson

CONTINUE_PATH = "/v1/completions"
TOKEN_IDS = "return_token_ids"
DONE = b"data: [DONE]\n\n"
# The sampling fields a continuation keeps; the rest either name the prompt, which the
# continuation replaces, or would change what it generates (see the module's docstring).
KEPT = frozenset({
    "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos",
    "repetition_penalty", "presence_penalty", "frequency_penalty", "logit_bias",
    "allowed_token_ids", "bad_words", "skip_special_tokens", "spaces_between_special_tokens",
    "include_stop_str_in_output", "user", "priority", "cache_salt", "rid", "request_id",
    "length_penalty",
})  # fmt: skip
# Fields whose presence (truthy) means the engine keeps state a continuation cannot rebuild.
STATEFUL = (
    "logprobs",
    "top_logprobs",
    "prompt_logprobs",
    "echo",
    "suffix",
    "use_beam_search",
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
)
# A token-id field in an event (compact, as vLLM writes it, or spaced): removed before the
# client sees the event when the gateway asked for the ids, not the client. A JSON string
# cannot hold this pattern: its quotes would be escaped.
_IDS = re.compile(rb',\s*"(?:prompt_)?token_ids"\s*:\s*(?:\[[^\]]*\]|null)')


def continuable(body: dict[str, Any]) -> bool:
    """Whether a stream of this request can be continued elsewhere mid-way."""
    if not body.get("stream") or any(body.get(name) for name in STATEFUL):
        return False
    if body.get("n", 1) not in (1, None) or body.get("best_of", 1) not in (1, None):
        return False
    if body.get("tools") and body.get("tool_choice") != "none":
        return False
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        return False
    prompt = body.get("prompt")
    if prompt is not None and not _one_prompt(prompt):
        return False
    return True


def _one_prompt(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return True
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return True
    return isinstance(prompt, list) and len(prompt) == 1


def strip_ids(events: bytes) -> bytes:
    """`events` without the token-id fields the gateway asked for."""
    return _IDS.sub(b"", events)


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


@dataclass
class Transcript:
    """What a stream's client received, read back from its events."""

    chat: bool
    envelope: dict[str, Any] = field(default_factory=dict)
    prompt_ids: list[int] | None = None
    generated: list[int] = field(default_factory=list)
    # How many of `generated` the client has seen as text: an engine holds back the text of
    # a token that ends partway through a character, and sends it with a later one.
    shown: int = 0
    finished: bool = False
    usage: bool = False
    done: bool = False
    # A chat delta held reasoning or tool calls: the engine's parser state is lost with it.
    parsed: bool = False

    @classmethod
    def read(cls, events: bytes, chat: bool) -> Transcript:
        transcript = cls(chat)
        for payload in data_lines(events):
            if payload == b"[DONE]":
                transcript.done = True
                continue
            try:
                chunk = fastjson.loads(payload)
            except ValueError:
                continue
            if isinstance(chunk, dict):
                transcript._add(chunk)
        return transcript

    def _add(self, chunk: dict[str, Any]) -> None:
        if not self.envelope:
            names = ("id", "object", "created", "model", "system_fingerprint")
            self.envelope = {k: chunk[k] for k in names if chunk.get(k) is not None}
        if isinstance(chunk.get("prompt_token_ids"), list):  # chat: on the first event
            self.prompt_ids = chunk["prompt_token_ids"]
        if chunk.get("usage") and not chunk.get("choices"):
            self.usage = True
        for choice in chunk.get("choices") or []:
            if isinstance(choice.get("prompt_token_ids"), list):  # completions
                self.prompt_ids = choice["prompt_token_ids"]
            if isinstance(choice.get("token_ids"), list):
                self.generated.extend(choice["token_ids"])
            delta = choice.get("delta") or {}
            if choice.get("text") or delta.get("content"):
                self.shown = len(self.generated)
            if choice.get("finish_reason") is not None:
                self.finished = True
                self.shown = len(self.generated)
            if delta.get("tool_calls") or delta.get("reasoning") or delta.get("reasoning_content"):
                self.parsed = True

    def can_continue(self) -> bool:
        return self.prompt_ids is not None and not self.parsed and bool(self.envelope)

    def continuation(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The completions request that generates the rest of `body`'s answer (None when
        its budget is spent).

        It goes on after the last token whose text the client has: tokens whose text the
        engine still held back are generated again (the same ones, at temperature 0) with
        their text. Nor would a prompt ending partway through a character do: vLLM's
        detokenizer, primed with it, repeats the whole prompt's text in its first event.
        """
        assert self.prompt_ids is not None
        kept = self.generated[: self.shown]
        out = {name: body[name] for name in KEPT if name in body}
        budget = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(budget, int):
            if budget - len(kept) <= 0:
                return None
            out["max_tokens"] = budget - len(kept)
        if isinstance(body.get("min_tokens"), int):
            out["min_tokens"] = max(0, body["min_tokens"] - len(kept))
        out.update(
            model=body["model"],
            prompt=self.prompt_ids + kept,
            stream=True,
            stream_options={"include_usage": True},
        )
        out[TOKEN_IDS] = True
        return out

    def usage_of(self, continued: dict[str, Any] | None) -> dict[str, int]:
        """The whole request's usage: the original prompt, every token generated."""
        prompt = len(self.prompt_ids or ())
        completion = self.shown + int((continued or {}).get("completion_tokens") or 0)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def ending(self, want_usage: bool) -> bytes:
        """The rest of a stream with nothing left to generate when its engine died: its
        answer complete, or its budget spent with the finish event lost (then a "length"
        finish comes first)."""
        tail = b""
        if not self.finished:
            choice = self._choice({"text": "", "finish_reason": "length"})
            tail += _event({**self.envelope, "choices": [choice]})
        if want_usage and not self.usage:
            tail += _event({**self.envelope, "choices": [], "usage": self.usage_of(None)})
        return tail + (b"" if self.done else DONE)

    def translate(self, events: bytes, want_usage: bool) -> bytes:
        """A continuation's events as the original stream's (token ids kept: the transcript
        reads them; the client's copy is stripped)."""
        out = []
        for payload in data_lines(events):
            if payload == b"[DONE]":
                out.append(DONE)
                continue
            try:
                chunk = fastjson.loads(payload)
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            choices = [self._choice(c) for c in chunk.get("choices") or []]
            if choices:
                out.append(_event({**self.envelope, "choices": choices}))
            if chunk.get("usage") and want_usage:
                usage = self.usage_of(chunk["usage"])
                out.append(_event({**self.envelope, "choices": [], "usage": usage}))
        return b"".join(out)

    def _choice(self, choice: dict[str, Any]) -> dict[str, Any]:
        text = choice.get("text") or ""
        out: dict[str, Any] = {"index": 0}
        if self.chat:
            out["delta"] = {"content": text}
        else:
            out["text"] = text
        out["logprobs"] = None
        out["finish_reason"] = choice.get("finish_reason")
        if choice.get("stop_reason") is not None:
            out["stop_reason"] = choice["stop_reason"]
        out["token_ids"] = choice.get("token_ids") or []
        return out


def data_lines(events: bytes) -> list[bytes]:
    """The `data:` payloads of complete SSE events (one line each, as OpenAI streams)."""
    found = []
    for line in events.split(b"\n"):
        if line.startswith(b"data:"):
            found.append(line[5:].strip())
    return found


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + fastjson.dumps(chunk) + b"\n\n"
