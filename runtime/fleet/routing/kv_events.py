"""What each replica's KV cache really holds, from the engine's own KV-cache events.

vLLM publishes, over ZeroMQ (`--kv-events-config`), a `BlockStored` event for each block it
caches — its hash, its parent's hash, its token ids, and the extra keys and LoRA name its
hash also covers — a `BlockRemoved` event for each
block it evicts, and `AllBlocksCleared` when it empties its cache. Each replica's blocks are
kept here as a tree keyed by (parent hash, token ids): a prompt's tokens, cut into blocks of
the engine's size, walk it from the root, so the match needs neither vLLM's hash function
nor its seed. A replica's blocks are bounded by its engine's own cache: every block it
evicts is removed here too.

This is the exact half of prefix routing; it needs the prompt's token ids as the engine
renders them, which the gateway asks the engine for (`runtime.fleet.routing.exact`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

log = logging.getLogger("chutebox.routing")


@dataclass
class ReplicaBlocks:
    """The cached blocks of one engine: (parent hash, token ids) → block hash, and back."""

    block_size: int = 0
    # Keyed by the hash of a block's token ids, not the ids: a tenth of the memory.
    children: dict[tuple[int | None, int], int] = field(default_factory=dict)
    parents: dict[int, tuple[int | None, int]] = field(default_factory=dict)

    def stored(
        self, hashes: Sequence[int], parent: int | None, tokens: Sequence[int], size: int
    ) -> None:
        self.block_size = size
        for i, block in enumerate(hashes):
            key = (parent, hash(tuple(tokens[i * size : (i + 1) * size])))
            self.children[key] = block
            self.parents[block] = key
            parent = block

    def removed(self, hashes: Sequence[int]) -> None:
        for block in hashes:
            key = self.parents.pop(block, None)
            if key is not None and self.children.get(key) == block:
                del self.children[key]

    def cleared(self) -> None:
        self.children.clear()
        self.parents.clear()

    def depth(self, tokens: Sequence[int]) -> int:
        """How many leading whole blocks of `tokens` this engine holds."""
        size = self.block_size
        if not size:
            return 0
        parent: int | None = None
        depth = 0
        for start in range(0, len(tokens) - size + 1, size):
            block = self.children.get((parent, hash(tuple(tokens[start : start + size]))))
            if block is None:
                break
            parent, depth = block, depth + 1
        return depth


def _plain(event: dict[str, Any]) -> bool:
    """A block keyed by its tokens alone. vLLM adds extra keys (a `cache_salt`, image
    hashes) and LoRA names to a block's hash; a prompt's token ids cannot tell those apart,
    so such blocks are left to the approximate index."""
    extra = event.get("extra_keys") or ()
    return event.get("lora_name") is None and all(key is None for key in extra)


class KVEvents:
    """The replicas of one chute whose engines publish KV-cache events."""

    def __init__(self) -> None:
        self.replicas: dict[int, ReplicaBlocks] = {}
        self._watchers: dict[int, asyncio.Task[None]] = {}
        # The last batch number seen per replica: a gap means events were lost.
        self._sequence: dict[int, int] = {}
        self._decoder = msgspec.msgpack.Decoder()

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def blocks(self) -> dict[int, int]:
        return {index: len(blocks.parents) for index, blocks in self.replicas.items()}

    def ingest(self, replica: int, payload: bytes, sequence: int | None = None) -> None:
        """Apply one published batch: `[timestamp, [event, …], …]`, each event a map with
        its `type`. After a gap in the batch numbers (a subscriber falling behind drops
        messages) the replica's blocks are dropped: a lost removal would leave a block here
        that the engine no longer holds, so only what arrives from then on is trusted."""
        blocks = self.replicas.setdefault(replica, ReplicaBlocks())
        if sequence is not None:
            last = self._sequence.get(replica)
            self._sequence[replica] = sequence
            if last is not None and sequence != last + 1:
                log.warning(
                    "replica %d: KV events %d to %d lost; its blocks are relearned",
                    replica,
                    last + 1,
                    sequence - 1,
                )
                blocks.cleared()
        batch = self._decoder.decode(payload)
        for event in batch[1]:
            kind = event.get("type")
            if kind == "BlockStored" and _plain(event):
                hashes, tokens = event["block_hashes"], event["token_ids"]
                parent, size = event.get("parent_block_hash"), int(event["block_size"])
                blocks.stored(hashes, parent, tokens, size)
            elif kind == "BlockRemoved":
                blocks.removed(event["block_hashes"])
            elif kind == "AllBlocksCleared":
                blocks.cleared()

    def match(self, tokens: Sequence[int], usable: int) -> tuple[int, int]:
        """The most leading tokens (in whole blocks) a usable replica holds, and which
        replicas (a mask) hold that many."""
        best, mask = 0, 0
        for index, blocks in self.replicas.items():
            if not usable >> index & 1:
                continue
            depth = blocks.depth(tokens) * blocks.block_size
            if depth > best:
                best, mask = depth, 1 << index
            elif depth and depth == best:
                mask |= 1 << index
        return best, mask

    def watch(self, replica: int, endpoint: str) -> None:
        """Follow the events of replica `replica`'s engine, published on `endpoint`."""
        self.forget(replica)
        self.replicas[replica] = ReplicaBlocks()
        self._watchers[replica] = asyncio.create_task(
            self._follow(replica, endpoint), name=f"kv-events:{replica}"
        )

    def forget(self, replica: int) -> None:
        """The replica's engine stopped: its cache, and its events, are gone."""
        task = self._watchers.pop(replica, None)
        if task is not None:
            task.cancel()
        self.replicas.pop(replica, None)
        self._sequence.pop(replica, None)

    async def _follow(self, replica: int, endpoint: str) -> None:
        import zmq  # only where an engine publishes
        import zmq.asyncio

        context = zmq.asyncio.Context.instance()
        socket = context.socket(zmq.SUB)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint)
        try:
            while True:
                # [topic, sequence number, payload]
                parts: list[Any] = await socket.recv_multipart()
                try:
                    sequence = int.from_bytes(parts[1], "big") if len(parts) == 3 else None
                    self.ingest(replica, parts[-1], sequence)
                except (msgspec.DecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
                    log.warning("replica %d: unreadable KV event batch: %s", replica, exc)
        finally:
            socket.close()
