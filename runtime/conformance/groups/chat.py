"""chat, streaming, stop, length, n, seed, completions and tokenize."""

from __future__ import annotations

import json
from typing import Any

from runtime.conformance.check import Check, Failed, Session, Skipped, conforms, expect
from runtime.protocol.responses import (
    CreateChatCompletionResponse,
    CreateChatCompletionStreamResponse,
    CreateCompletionResponse,
)

PROMPT = [{"role": "user", "content": "Write a few words about the sea."}]


def _chat(session: Session, **fields: Any) -> CreateChatCompletionResponse:
    body = {"model": session.model(), "messages": PROMPT, "max_tokens": 16, **fields}
    reply = session.request("POST", "/v1/chat/completions", body)
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    return conforms(CreateChatCompletionResponse, reply.json(), "a chat completion")


def _usage_adds_up(usage: Any) -> None:
    expect(usage is not None, "usage", usage)
    expect(usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
           "total_tokens = prompt_tokens + completion_tokens", usage.model_dump())  # fmt: skip


def non_stream(session: Session) -> str:
    reply = _chat(session, temperature=0)
    expect(len(reply.choices) == 1, "one choice", len(reply.choices))
    _usage_adds_up(reply.usage)
    return f"finish_reason={reply.choices[0].finish_reason} usage={reply.usage}"


def max_tokens_length(session: Session) -> str:
    reply = _chat(session, max_tokens=1, temperature=0)
    expect(reply.choices[0].finish_reason == "length", 'finish_reason "length"',
           reply.choices[0].finish_reason)  # fmt: skip
    expect(reply.usage is not None and reply.usage.completion_tokens == 1,
           "completion_tokens 1", reply.usage)  # fmt: skip
    return "length after 1 token"


def stop_sequence(session: Session) -> str:
    first = _chat(session, temperature=0, seed=7, max_tokens=24).choices[0].message.content or ""
    words = first.split()
    if len(words) < 3:
        raise Skipped(f"the model's answer is too short to cut: {first!r}")
    stop = words[len(words) // 2]
    second = _chat(session, temperature=0, seed=7, max_tokens=24, stop=[stop]).choices[0]
    text = second.message.content or ""
    expect(stop not in text, f"no {stop!r} in the output", text)
    expect(second.finish_reason == "stop", 'finish_reason "stop"', second.finish_reason)
    expect(first.startswith(text.rstrip()), "the text before the stop sequence", text)
    return f"stopped before {stop!r}"


def n_choices(session: Session) -> str:
    reply = _chat(session, n=2, temperature=1, seed=3)
    expect([c.index for c in reply.choices] == [0, 1], "choices with index 0 and 1",
           [c.index for c in reply.choices])  # fmt: skip
    return "2 choices"


def seed_reproducible(session: Session) -> str:
    first = _chat(session, temperature=1, seed=1234).choices[0].message.content
    second = _chat(session, temperature=1, seed=1234).choices[0].message.content
    expect(first == second, "the same text for the same seed", [first, second])
    return repr(first)[:80]


def _stream(session: Session, body: dict[str, Any]) -> list[Any]:
    """The `data:` payloads of a streamed reply, checking the framing on the way."""
    session.sent.append(f"POST /v1/chat/completions {json.dumps(body)[:300]}")
    frames: list[Any] = []
    with session.http.stream("POST", "/v1/chat/completions", json=body,
                             headers=session.auth()) as reply:  # fmt: skip
        expect(reply.status_code == 200, "200", reply.status_code)
        expect(reply.headers.get("content-type", "").startswith("text/event-stream"),
               "Content-Type text/event-stream", reply.headers.get("content-type"))  # fmt: skip
        for line in reply.iter_lines():
            if not line or line.startswith(":"):
                continue
            expect(line.startswith("data: "), "only `data: ` lines", line)
            payload = line[len("data: ") :]
            frames.append(payload if payload == "[DONE]" else json.loads(payload))
    expect(bool(frames) and frames[-1] == "[DONE]", "data: [DONE] last", frames[-1:])
    return frames[:-1]


def streaming(session: Session) -> str:
    body = {"model": session.model(), "messages": PROMPT, "max_tokens": 12, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    chunks = [conforms(CreateChatCompletionStreamResponse, c, "a chunk")
              for c in _stream(session, body)]  # fmt: skip
    expect(len(chunks) >= 2, "several chunks", len(chunks))
    last = chunks[-1]
    expect(last.choices == [] and last.usage is not None,
           "a final usage chunk with choices []", last.model_dump())  # fmt: skip
    _usage_adds_up(last.usage)
    early = [c.usage for c in chunks[:-1] if c.usage is not None]
    expect(not early, "no usage before the final chunk", early)
    return f"{len(chunks)} chunks"


def stream_matches(session: Session) -> str:
    fields = {"temperature": 0, "seed": 11, "max_tokens": 12}
    whole = _chat(session, **fields).choices[0].message.content or ""
    body = {"model": session.model(), "messages": PROMPT, "stream": True, **fields}
    text = "".join((c["choices"][0]["delta"].get("content") or "")
                   for c in _stream(session, body) if c.get("choices"))  # fmt: skip
    expect(text == whole, "the streamed text equals the non-streamed text", [text, whole])
    return repr(text)[:80]


def completions(session: Session) -> str:
    body = {"model": session.model(), "prompt": "The sea is", "max_tokens": 5, "temperature": 0}
    reply = session.request("POST", "/v1/completions", body)
    if reply.status_code == 404:
        raise Skipped("no /v1/completions route")
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:200]}")
    parsed = conforms(CreateCompletionResponse, reply.json(), "a completion")
    expect(parsed.usage is not None and parsed.usage.completion_tokens <= 5,
           "at most 5 completion tokens", parsed.usage)  # fmt: skip
    return repr(parsed.choices[0].text)[:80]


def tokenize(session: Session) -> str:
    text = "The sea is wide."
    reply = session.request("POST", "/tokenize", {"model": session.model(), "prompt": text})
    if reply.status_code in (404, 405):
        raise Skipped("no /tokenize route (vLLM chutes have one)")
    expect(reply.status_code == 200, "200", reply.text[:200])
    data = reply.json()
    expect(data.get("count") == len(data.get("tokens", [])) and "max_model_len" in data,
           "{count, max_model_len, tokens}", data)  # fmt: skip
    back = session.request("POST", "/detokenize",
                           {"model": session.model(), "tokens": data["tokens"]})  # fmt: skip
    expect(back.status_code == 200, "200", back.text[:200])
    prompt = back.json().get("prompt", "")
    if prompt.strip() != text:
        raise Failed(f"{text!r} back", repr(prompt))
    return f"{data['count']} tokens, round trip exact"


CHECKS = [
    Check("chat", "non-stream", non_stream, "an OpenAI chat completion with usage that adds up"),
    Check("chat", "max-tokens", max_tokens_length, 'max_tokens reached → finish_reason "length"'),
    Check("chat", "stop", stop_sequence, "a stop sequence ends the text before it"),
    Check("chat", "n", n_choices, "n=2 gives two choices"),
    Check("chat", "seed", seed_reproducible, "the same seed gives the same text"),
    Check("streaming", "sse", streaming, "SSE frames, include_usage last, [DONE] last"),
    Check("streaming", "matches", stream_matches, "stream text equals non-stream text"),
    Check("completions", "schema", completions, "an OpenAI text completion"),
    Check("tokenize", "round-trip", tokenize, "/tokenize then /detokenize gives the text back"),
]
