"""Reading back what a stream's client saw, and the request that continues it."""

from __future__ import annotations

import json
from typing import Any

from runtime.protocol.continuation import Transcript, continuable, strip_ids

ENVELOPE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}


def event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def chat_events(*deltas: tuple[str, list[int]]) -> bytes:
    first = {
        **ENVELOPE,
        "prompt_token_ids": [1, 2, 3],
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
    }
    out = event(first)
    for text, ids in deltas:
        delta = {"content": text} if text else {}
        out += event({**ENVELOPE, "choices": [{"index": 0, "delta": delta, "token_ids": ids}]})
    return out


def test_the_continuation_starts_after_the_last_token_whose_text_was_shown() -> None:
    # Token 12 ends partway through a character: its text waits for the next token's.
    transcript = Transcript.read(chat_events((" a", [10]), (" b", [11]), ("", [12])), chat=True)
    body = {
        "model": "m",
        "messages": [],
        "max_tokens": 10,
        "temperature": 0,
        "tools": None,
        "min_tokens": 5,
        "stream": True,
    }
    continuation = transcript.continuation(body)
    assert continuation is not None
    assert continuation["prompt"] == [1, 2, 3, 10, 11]
    assert continuation["max_tokens"] == 8 and continuation["min_tokens"] == 3
    assert continuation["temperature"] == 0 and "messages" not in continuation
    assert continuation["return_token_ids"] is True
    usage = transcript.usage_of({"completion_tokens": 8, "prompt_tokens": 5})
    assert usage == {"prompt_tokens": 3, "completion_tokens": 10, "total_tokens": 13}


def test_a_continuations_events_read_as_the_original_streams() -> None:
    transcript = Transcript.read(chat_events((" a", [10])), chat=True)
    continued = event(
        {
            "id": "cmpl-9",
            "object": "text_completion",
            "created": 9,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "text": " b",
                    "finish_reason": "length",
                    "token_ids": [11],
                    "prompt_token_ids": [1, 2, 3, 10],
                }
            ],
        }
    )
    continued += event({"id": "cmpl-9", "choices": [], "usage": {"completion_tokens": 1}})
    continued += b"data: [DONE]\n\n"
    out = transcript.translate(continued, want_usage=True).split(b"\n\n")
    chunk, usage = json.loads(out[0][6:]), json.loads(out[1][6:])
    assert chunk["id"] == "chatcmpl-1" and chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"][0]["delta"] == {"content": " b"}
    assert chunk["choices"][0]["finish_reason"] == "length"
    assert usage["usage"]["completion_tokens"] == 2 and usage["id"] == "chatcmpl-1"
    assert out[2] == b"data: [DONE]"
    assert b"token_ids" not in strip_ids(b"\n\n".join(out))


def test_an_answer_complete_when_its_engine_died_only_gets_its_end() -> None:
    events = chat_events((" a", [10]))
    events += event(
        {
            **ENVELOPE,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "token_ids": [0]}],
        }
    )
    transcript = Transcript.read(events, chat=True)
    assert transcript.finished
    ending = transcript.ending(want_usage=True)
    assert json.loads(ending.split(b"\n\n")[0][6:])["usage"]["completion_tokens"] == 2
    assert ending.endswith(b"data: [DONE]\n\n")


def test_token_id_fields_are_stripped_compact_or_spaced_and_never_inside_text() -> None:
    compact = (
        b'data: {"choices":[{"index":0,"text":"x","token_ids":[1,2]}],"prompt_token_ids":null}'
    )
    assert strip_ids(compact) == b'data: {"choices":[{"index":0,"text":"x"}]}'
    spaced = event({"choices": [{"text": "x", "token_ids": [1]}]})
    assert strip_ids(spaced) == event({"choices": [{"text": "x"}]})
    quoted = event({"choices": [{"text": ',"token_ids":[1]'}]})
    assert strip_ids(quoted) == quoted


def test_what_keeps_state_outside_prompt_and_tokens_is_not_continuable() -> None:
    base: dict[str, Any] = {"model": "m", "stream": True, "messages": []}
    assert continuable(base) and continuable({**base, "tools": [{}], "tool_choice": "none"})
    extras: list[dict[str, Any]] = [
        {"n": 2},
        {"logprobs": True},
        {"tools": [{}]},
        {"echo": True},
        {"response_format": {"type": "json_schema"}},
        {"stream": False},
        {"prompt": ["a", "b"]},
    ]
    for extra in extras:
        assert not continuable({**base, **extra}), extra
    assert continuable({**base, "prompt": [1, 2, 3]}) and continuable({**base, "prompt": ["a"]})


def test_a_stream_whose_budget_was_spent_gets_a_length_finish_and_its_end() -> None:
    transcript = Transcript.read(chat_events((" a", [10]), (" b", [11])), chat=True)
    assert transcript.continuation({"model": "m", "max_tokens": 2}) is None
    finish, usage, done = transcript.ending(want_usage=True).split(b"\n\n")[:3]
    choice = json.loads(finish[6:])["choices"][0]
    assert choice["finish_reason"] == "length" and choice["delta"] == {"content": ""}
    assert json.loads(usage[6:])["usage"]["completion_tokens"] == 2
    assert done == b"data: [DONE]"
