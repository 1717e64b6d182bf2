"""The prefix index: chained block keys, longest match, LRU order and its memory cap."""

from __future__ import annotations

import tracemalloc

from runtime.fleet.routing.prefix import BLOCK_CHARS, ENTRY_BYTES, PrefixIndex, prefix_keys

DOC = "".join(f"word{i} " for i in range(200))  # ~1,400 characters


def test_keys_chain_so_a_shared_beginning_shares_keys_and_nothing_after_it() -> None:
    one = prefix_keys(DOC + "first question?", "m")
    two = prefix_keys(DOC + "second question?", "m")
    whole = len(DOC) // BLOCK_CHARS
    assert one[:whole] == two[:whole]
    # A block that differs changes every key after it, even where the text agrees again.
    changed = prefix_keys("X" + DOC[1:], "m")
    assert not set(changed) & set(one)


def test_only_whole_blocks_are_keyed() -> None:
    assert prefix_keys("a" * (BLOCK_CHARS - 1), "m") == []
    assert len(prefix_keys("a" * (BLOCK_CHARS * 3 + 5), "m")) == 3


def test_the_seed_partitions_the_keys() -> None:
    assert not set(prefix_keys(DOC, ("m", None))) & set(prefix_keys(DOC, ("m", "salt")))
    assert not set(prefix_keys(DOC, ("m", None))) & set(prefix_keys(DOC, ("other", None)))


def test_match_finds_the_deepest_block_a_usable_replica_holds() -> None:
    index = PrefixIndex(1 << 20)
    doc = prefix_keys(DOC, "m")
    index.record(doc[:4], replica=0)
    index.record(doc, replica=1)
    assert index.match(doc, usable=0b11) == (len(doc), 0b10)
    assert index.match(doc, usable=0b01) == (4, 0b01)  # replica 1 is not ready
    assert index.match(doc[:2], usable=0b11) == (2, 0b11)
    assert index.match(prefix_keys("other " * 100, "m"), usable=0b11) == (0, 0)


def test_the_blocks_unused_longest_go_first_past_the_cap() -> None:
    assert PrefixIndex(max_bytes=0).capacity == 2
    index = PrefixIndex(max_bytes=20 * ENTRY_BYTES)
    assert index.capacity == 20
    a, b, c = (prefix_keys(letter * BLOCK_CHARS * 5, "m") for letter in "abc")
    index.record(a, 0)
    index.record(b, 1)
    index.record(a, 0)  # used again: it outlives b
    index.record(c, 0)
    assert len(index) <= 20
    assert index.match(a, 0b11) == (5, 0b01)
    assert index.match(c, 0b11) == (5, 0b01)
    assert index.match(b, 0b11) == (0, 0)


def test_forget_drops_a_replica_and_only_that_replica() -> None:
    index = PrefixIndex(1 << 20)
    doc = prefix_keys(DOC, "m")
    index.record(doc, 0)
    index.record(doc[:3], 1)
    index.forget(1)
    assert index.match(doc, 0b11) == (len(doc), 0b01)
    index.forget(0)
    assert len(index) == 0


def test_memory_stays_under_the_cap_with_100000_distinct_prompts() -> None:
    cap = 1 << 20
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = PrefixIndex(cap)
        for n in range(100_000):
            # Three blocks each, and replicas past the small-int cache (index 40).
            prompt = f"{n:08d} " * (BLOCK_CHARS * 3 // 9 + 1)
            index.record(prefix_keys(prompt, ("m", None)), n % 2 * 40)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(f"{used} bytes traced for {len(index)} entries of a capacity of {index.capacity}")
    assert index.capacity // 2 <= len(index) <= index.capacity
    assert index.bytes <= cap
    assert used <= cap, f"{used} bytes traced for {len(index)} entries"
