"""Which replicas recently served which prompt prefixes, in bounded memory.

A prompt is cut into blocks of `BLOCK_CHARS` characters; each block's key is the hash of the
previous block's key and its text, so a key stands for the whole prefix up to it (as vLLM
keys its KV blocks by token prefix). The index maps a key to the replicas that served that
prefix, as a bit mask; recording a prompt refreshes its blocks, and past the cap the blocks
unused longest go. No text is kept, so the cap in bytes is a cap in entries (`ENTRY_BYTES`
each, an upper bound the tests check on CPython with tracemalloc).
Only whole blocks are keyed: an engine caches whole blocks only, so a prompt shorter than one
block has nothing to reuse and goes by load.
"""

from __future__ import annotations

# 128 characters are about 32 tokens of English: two of vLLM's 16-token blocks.
BLOCK_CHARS = 128
ENTRY_BYTES = 160


def prefix_keys(text: str, seed: object) -> list[int]:
    """The chained key of each whole block of `text`; `seed` partitions the key space
    (the model name a request sent and its `cache_salt`)."""
    key = hash(seed)
    keys = []
    for start in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):
        key = hash((key, text[start : start + BLOCK_CHARS]))
        keys.append(key)
    return keys


class PrefixIndex:
    """Prefix keys → the replicas (bit `1 << index`) that served them, at most `capacity`
    keys.

    Two generations stand in for a least-recently-used list: keys are recorded into the
    young one (moved out of the old one if there), and when the young one holds half the
    capacity it becomes the old one and the old one is dropped. A block unused for the last
    half-capacity of recordings is gone; one used since survives. Plain dicts cost about half
    the memory of an ordered one per entry, and recording a block is one dict write.
    """

    def __init__(self, max_bytes: int) -> None:
        self.capacity = max(2, max_bytes // ENTRY_BYTES)
        self._half = self.capacity // 2
        self._young: dict[int, int] = {}
        self._old: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    @property
    def bytes(self) -> int:
        """The memory the entries are budgeted at (the cap is checked against this)."""
        return len(self) * ENTRY_BYTES

    @property
    def max_bytes(self) -> int:
        return self.capacity * ENTRY_BYTES

    def match(self, keys: list[int], usable: int) -> tuple[int, int]:
        """How many leading blocks some usable replica holds, and which replicas (a mask)
        hold that many."""
        young, old = self._young, self._old
        depth, mask = 0, 0
        for key in keys:
            held = (young.get(key, 0) | old.get(key, 0)) & usable
            if not held:
                break
            depth, mask = depth + 1, held
        return depth, mask

    def record(self, keys: list[int], replica: int) -> None:
        """`replica` now holds every block of this prompt; they become the most recent."""
        bit = 1 << replica
        young, old, half = self._young, self._old, self._half
        for key in keys:
            young[key] = young.get(key, 0) | old.pop(key, 0) | bit
            if len(young) >= half:
                self._old, self._young = young, {}
                young, old = self._young, self._old

    def forget(self, replica: int) -> None:
        """The replica's engine restarted with an empty cache."""
        keep = ~(1 << replica)
        for generation in (self._young, self._old):
            for key, held in list(generation.items()):
                if held & keep:
                    generation[key] = held & keep
                else:
                    del generation[key]
