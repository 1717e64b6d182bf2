"""Requests whose engine dies under them: moved to the other replica, the client's stream
going on where it was, against two replicas of the toy model (real servers whose
connections drop on demand)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.fleet.chutes import ChuteState
from tests.support.toy_gateway import Pair, toy_pair
from tests.support.toy_lm import VOCAB

CHAT: dict[str, Any] = {
    "model": "toy",
    "messages": [{"role": "user", "content": "tell me w5 w9"}],
    "max_tokens": 12,
    "temperature": 0,
}
PROMPT: dict[str, Any] = {"model": "toy", "prompt": "w3 w4 w5", "max_tokens": 12, "temperature": 0}


Factory = Callable[..., Pair]


@pytest.fixture
def make_pair(tmp_path: Path) -> Iterator[Factory]:
    with ExitStack() as stack:

        def make(probe: bool = True, **chute_settings: Any) -> Pair:
            return stack.enter_context(toy_pair(tmp_path, probe, **chute_settings))

        yield make


def text_of(events: list[Any], chat: bool) -> str:
    key = "content" if chat else "text"
    return "".join(
        (c["delta"].get(key) or "") if chat else (c.get(key) or "")
        for e in events
        if isinstance(e, dict)
        for c in e["choices"]
    )


def usage_of(events: list[Any]) -> dict[str, int]:
    found = [e["usage"] for e in events if isinstance(e, dict) and e.get("usage")]
    assert len(found) == 1, events
    return {k: found[0][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


@pytest.mark.parametrize(
    "path, body", [("/v1/chat/completions", CHAT), ("/v1/completions", PROMPT)]
)
@pytest.mark.parametrize("cut", [0, 1, 2, 6, 13])
def test_a_stream_broken_off_goes_on_at_the_other_replica_as_one_stream(
    make_pair: Factory, path: str, body: dict[str, Any], cut: int
) -> None:
    pair = make_pair()
    chat = path.endswith("chat/completions")
    whole = pair.stream(path, body)
    pair.cuts.append(cut)
    moved = pair.stream(path, body)
    assert text_of(moved, chat) == text_of(whole, chat) != ""
    assert usage_of(moved) == usage_of(whole)
    assert moved[-1] == "[DONE]" and moved.count("[DONE]") == 1
    # One stream: one id throughout, one finish, and no token ids the client did not ask for.
    chunks = [e for e in moved if isinstance(e, dict)]
    assert {e["id"] for e in chunks} == {chunks[0]["id"]}
    assert sum(1 for e in chunks for c in e["choices"] if c.get("finish_reason")) == 1
    assert not any("token_ids" in json.dumps(e) for e in chunks)
    kinds = {e["object"] for e in chunks}
    assert kinds == ({"chat.completion.chunk"} if chat else {"text_completion"})
    # Cut after the last token (13 events in): nothing was left to generate, nothing moved.
    moves = 1 if cut < 13 else 0
    metrics = httpx.get(pair.base_url + "/metrics").text
    assert f'chutebox_request_migrations_total{{chute="toy"}} {moves}.0' in metrics


def test_the_continuation_asks_for_prompt_plus_what_was_sent_with_the_budget_left(
    make_pair: Factory,
) -> None:
    pair = make_pair()
    pair.cuts.append(5)  # the role event, then four tokens
    events = pair.stream("/v1/chat/completions", CHAT)
    [first] = [r for r in pair.sent() if "messages" in r]
    [continuation] = [r for r in pair.sent() if "prompt" in r]
    assert first["return_token_ids"] is True
    sent_before = text_of(events, True).split()[:4]
    ids = [VOCAB.index(word) for word in sent_before]
    assert continuation["prompt"][-4:] == ids
    assert continuation["max_tokens"] == CHAT["max_tokens"] - 4
    assert continuation["temperature"] == 0 and "messages" not in continuation


def test_a_whole_reply_broken_off_is_asked_again_at_the_other_replica(make_pair: Factory) -> None:
    pair = make_pair()
    whole = pair.post("/v1/chat/completions", CHAT).json()
    pair.cuts.append(1)
    moved = pair.post("/v1/chat/completions", CHAT)
    assert moved.status_code == 200, moved.text
    assert moved.json()["choices"] == whole["choices"]
    assert moved.json()["usage"] == whole["usage"]
    assert "return_token_ids" not in pair.sent()[-1]  # only streams are continued


def test_a_client_that_asked_for_token_ids_keeps_them(make_pair: Factory) -> None:
    pair = make_pair()
    whole = pair.stream("/v1/completions", {**PROMPT, "return_token_ids": True})
    pair.cuts.append(4)
    moved = pair.stream("/v1/completions", {**PROMPT, "return_token_ids": True})

    def ids(events: list[Any]) -> list[int]:
        return [
            t
            for e in events
            if isinstance(e, dict)
            for c in e["choices"]
            for t in c.get("token_ids") or []
        ]

    assert ids(moved) == ids(whole) and len(ids(whole)) == PROMPT["max_tokens"]


def test_it_moves_again_when_the_next_replica_dies_too_up_to_the_limit(
    make_pair: Factory,
) -> None:
    pair = make_pair(migration_limit=2)
    whole = pair.stream("/v1/chat/completions", CHAT)
    pair.cuts.extend([3, 2])  # the first replica, then the continuation on the second
    twice = pair.stream("/v1/chat/completions", CHAT)
    assert text_of(twice, True) == text_of(whole, True)
    assert usage_of(twice) == usage_of(whole)

    pair.cuts.extend([3, 2, 2])  # one more death than it may move
    failed = pair.stream("/v1/chat/completions", CHAT)
    error = [e for e in failed if isinstance(e, dict) and "error" in e]
    assert error and "broke off" in error[0]["error"]["message"]


def test_with_migration_off_a_broken_stream_ends_in_an_error_event(make_pair: Factory) -> None:
    pair = make_pair(migration_limit=0)
    pair.cuts.append(3)
    events = pair.stream("/v1/chat/completions", CHAT)
    assert "error" in events[-1] and events[-1]["error"]["code"] == "engine_unreachable"
    assert "return_token_ids" not in pair.sent()[-1]
    pair.cuts.append(1)
    assert pair.post("/v1/chat/completions", CHAT).status_code == 502


@pytest.mark.parametrize(
    "extra",
    [{"n": 2}, {"logprobs": True, "top_logprobs": 1}, {"response_format": {"type": "json_object"}}],
)
def test_what_cannot_be_continued_is_only_asked_again_before_its_first_event(
    make_pair: Factory, extra: dict[str, Any]
) -> None:
    pair = make_pair()
    pair.cuts.append(0)
    before_any = pair.stream("/v1/chat/completions", {**CHAT, **extra})
    assert before_any[-1] == "[DONE]" and text_of(before_any, True)
    assert "return_token_ids" not in pair.sent()[-1]
    pair.cuts.append(3)
    midway = pair.stream("/v1/chat/completions", {**CHAT, **extra})
    assert "error" in midway[-1]


def test_a_stream_whose_answer_was_complete_only_gets_its_end(make_pair: Factory) -> None:
    pair = make_pair()
    whole = pair.stream("/v1/completions", PROMPT)
    events_before_usage = PROMPT["max_tokens"]  # every token's event, the last with its finish
    pair.cuts.append(events_before_usage)
    ended = pair.stream("/v1/completions", PROMPT)
    assert text_of(ended, False) == text_of(whole, False)
    assert usage_of(ended) == usage_of(whole)
    assert len(pair.sent()) == 2  # no continuation was needed: the answer was complete


def test_with_no_replica_ready_it_waits_for_one_to_come_back(make_pair: Factory) -> None:
    pair = make_pair(probe=False, migration_wait=10)
    whole = pair.stream("/v1/chat/completions", CHAT)
    other = pair.chute.replicas[1]
    other.state = ChuteState.RESTARTING
    pair.cuts.append(4)

    def back() -> None:
        time.sleep(0.5)
        other.state = ChuteState.READY

    threading.Thread(target=back).start()
    moved = pair.stream("/v1/chat/completions", CHAT)
    assert text_of(moved, True) == text_of(whole, True)
    assert [r.outstanding for r in pair.chute.replicas] == [0, 0]


def test_with_no_replica_back_in_time_the_stream_ends_in_an_error_event(
    make_pair: Factory,
) -> None:
    pair = make_pair(probe=False, migration_wait=0.3)
    pair.chute.replicas[1].state = ChuteState.RESTARTING
    pair.cuts.append(4)
    events = pair.stream("/v1/chat/completions", CHAT)
    assert "error" in events[-1] and "No instances available" in events[-1]["error"]["message"]
    assert [r.outstanding for r in pair.chute.replicas] == [0, 0]
    assert pair.chute.admission.used == 0
