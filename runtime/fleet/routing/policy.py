"""The routing policy of one chute: least outstanding requests, or prefix affinity weighed
against the work each replica has queued.

Prefix routing sends a request where its first token should come soonest. For each ready
replica it estimates the prompt that replica must compute before answering: the prompts it
was sent and has not started answering (less what each found cached), plus this prompt less
the prefix the replica holds, plus a small charge per request it is generating for. A
replica holding the prompt's prefix saves computing that prefix, and wins until the prompts
queued there cost more than the saving; then the request goes where it can start sooner,
and that replica is recorded as holding the prefix too, so a popular prefix spreads.
Sizes are in blocks of the prefix index (`BLOCK_CHARS` characters of prompt text, about 32
tokens). Ties take turns, so an idle chute does not send everything to its first replica.

Counting queued prompts rather than requests is what keeps the tail short: a request count
treats a replica computing three long prompts as equal to one generating for three, and
sends the next prompt to be computed alongside the three (`bench/field.py`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from runtime.fleet.routing.kv_events import KVEvents
from runtime.fleet.routing.prefix import PrefixIndex, prefix_keys
from runtime.fleet.routing.prompt import prompt_text

# What a request generating on a replica costs a new prompt there, in prompt blocks: little
# (a decode step adds one token per request to the step that computes the prompt), but
# enough that load decides between replicas with nothing queued.
DECODE_BLOCKS = 1


class RoutingPolicy(enum.Enum):
    PREFIX = "prefix"
    LEAST_OUTSTANDING = "least-outstanding"


class Candidate(Protocol):
    """A ready replica as the router sees it."""

    @property
    def index(self) -> int: ...

    @property
    def outstanding(self) -> int:
        """Requests sent to it and not finished."""

    @property
    def waiting(self) -> int:
        """Of those, requests whose first output has not come back yet."""

    @property
    def queued_blocks(self) -> int:
        """The prompt blocks those waiting requests have to compute."""


@dataclass(frozen=True)
class Prompt:
    """What a request is matched by: the chained keys of its text, and, where the engines
    publish KV-cache events, its token ids as the engine renders them."""

    keys: list[int]
    tokens: Sequence[int] | None = None

    @property
    def blocks(self) -> int:
        """Its size in blocks (a partial last block counts as one)."""
        return len(self.keys) + 1


class Choice(NamedTuple):
    """Where a request goes (its position in the ready replicas), and the prompt blocks it
    adds to that replica's queue."""

    position: int
    blocks: int


@dataclass
class RouteStats:
    """What the router did, for /metrics and /status."""

    routed: dict[int, int] = field(default_factory=dict)
    # Requests sent to a replica that held part of their prompt.
    affinity_hits: int = 0
    # Requests whose prefix a replica held, sent to another that could start them sooner.
    spills: int = 0
    # Affinity hits found in the engines' own KV-cache events (the rest: the approximate
    # index).
    exact_hits: int = 0


class Router:
    """Chooses among a chute's ready replicas; one per chute."""

    def __init__(self, policy: RoutingPolicy, max_bytes: int) -> None:
        self.policy = policy
        self.index = PrefixIndex(max_bytes)
        # Filled where the engines publish KV-cache events (`routing_kv_events`).
        self.kv = KVEvents()
        self.stats = RouteStats()
        self._turn = 0

    def prompt(self, data: dict[str, Any], capability: str, model: object) -> Prompt | None:
        """What a request body is matched by, when this router matches prefixes and the
        prompt is long enough to share a block."""
        if self.policy is not RoutingPolicy.PREFIX:
            return None
        text = prompt_text(data, capability)
        keys = prefix_keys(text, (model, data.get("cache_salt"))) if text else None
        return Prompt(keys) if keys else None

    def choose(self, ready: Sequence[Candidate], prompt: Prompt | None) -> Choice:
        """Where in `ready` (not empty) to send a request. The prompt's tokens are matched
        against the engines' KV-cache events first; the approximate index answers when they
        show no replica holding it."""
        choice = Choice(0, prompt.blocks if prompt is not None else 0)
        if len(ready) > 1:
            if self.policy is RoutingPolicy.PREFIX:
                choice = self._soonest(ready, prompt)
                if prompt is not None:
                    self.index.record(prompt.keys, ready[choice.position].index)
            else:
                choice = Choice(self._least_loaded(ready), 0)
        chosen = ready[choice.position].index
        self.stats.routed[chosen] = self.stats.routed.get(chosen, 0) + 1
        return choice

    def forget(self, replica: int) -> None:
        """The replica's engine stopped: whatever it cached is gone."""
        self.index.forget(replica)
        self.kv.forget(replica)

    def _soonest(self, ready: Sequence[Candidate], prompt: Prompt | None) -> Choice:
        size = prompt.blocks if prompt is not None else 0
        depth, holders, exact = self._held(ready, prompt) if prompt is not None else (0, 0, 0)
        count = len(ready)
        self._turn += 1
        turn = self._turn
        best: tuple[int, int] | None = None
        choice = Choice(0, size)
        for position, candidate in enumerate(ready):
            held = depth if holders >> candidate.index & 1 else 0
            uncached = size - held
            decoding = candidate.outstanding - candidate.waiting
            cost = candidate.queued_blocks + uncached + DECODE_BLOCKS * decoding
            rank = (cost, (position + turn) % count)
            if best is None or rank < best:
                best, choice = rank, Choice(position, uncached)
        if holders:
            if holders >> ready[choice.position].index & 1:
                self.stats.affinity_hits += 1
                self.stats.exact_hits += exact
            else:
                self.stats.spills += 1
        return choice

    def _held(self, ready: Sequence[Candidate], prompt: Prompt) -> tuple[int, int, int]:
        """How many of the prompt's blocks the replicas holding the most of it hold, which
        replicas those are (a mask), and 1 when the engines' own events said so."""
        usable = 0
        for candidate in ready:
            usable |= 1 << candidate.index
        tokens = prompt.tokens
        if tokens and self.kv:
            cached, holders = self.kv.match(tokens, usable)
            if cached:
                # The engines count tokens: scale to the prompt's text blocks.
                return round(prompt.blocks * cached / len(tokens)), holders, 1
        depth, holders = self.index.match(prompt.keys, usable)
        return depth, holders, 0

    def _least_loaded(self, ready: Sequence[Candidate]) -> int:
        count = len(ready)
        self._turn += 1
        turn = self._turn
        return min(range(count), key=lambda p: (ready[p].outstanding, (p + turn) % count))
