"""The routing policy of one chute: least outstanding requests, or prefix affinity with a
spill gate.

Prefix affinity sends a request to a replica holding the longest prefix of its prompt (the
least loaded of them when several do), so the engine reuses that prefix's KV cache instead of
computing it again. The spill gate keeps a popular prefix from making a hot spot: when the
replica it would go to has more requests outstanding than `SPILL_RATIO` times the mean over
the ready replicas, and at least `SPILL_MARGIN` more than that mean, the request goes to the
least loaded replica instead, which is then recorded as holding the prefix too, so the
prefix's traffic spreads over both from then on.
Ties in load go round the replicas in turn, so an idle chute does not send everything to its
first replica.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.fleet.routing.kv_events import KVEvents
from runtime.fleet.routing.prefix import PrefixIndex, prefix_keys
from runtime.fleet.routing.prompt import prompt_text

SPILL_RATIO = 1.5
SPILL_MARGIN = 2


class RoutingPolicy(enum.Enum):
    PREFIX = "prefix"
    LEAST_OUTSTANDING = "least-outstanding"


class Candidate(Protocol):
    """A ready replica as the router sees it."""

    @property
    def index(self) -> int: ...

    @property
    def outstanding(self) -> int: ...


@dataclass(frozen=True)
class Prompt:
    """What a request is matched by: the chained keys of its text, and, where the engines
    publish KV-cache events, its token ids as the engine renders them."""

    keys: list[int]
    tokens: Sequence[int] | None = None


@dataclass
class RouteStats:
    """What the router did, for /metrics and /status."""

    routed: dict[int, int] = field(default_factory=dict)
    # Requests sent to a replica that held part of their prompt.
    affinity_hits: int = 0
    # Requests whose affine replica was too loaded, sent to the least loaded one.
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

    def choose(self, ready: Sequence[Candidate], prompt: Prompt | None) -> int:
        """The position in `ready` (not empty) of the replica to send to. The prompt's
        tokens are matched against the engines' KV-cache events first; the approximate index
        answers when they show no replica holding it."""
        position = 0  # one replica: nothing to weigh
        if len(ready) > 1:
            position = self._least_loaded(ready)
            if prompt is not None:
                position = self._affine(ready, prompt, position)
                self.index.record(prompt.keys, ready[position].index)
        chosen = ready[position].index
        self.stats.routed[chosen] = self.stats.routed.get(chosen, 0) + 1
        return position

    def forget(self, replica: int) -> None:
        """The replica's engine stopped: whatever it cached is gone."""
        self.index.forget(replica)
        self.kv.forget(replica)

    def _affine(self, ready: Sequence[Candidate], prompt: Prompt, least: int) -> int:
        usable = 0
        for candidate in ready:
            usable |= 1 << candidate.index
        tokens = prompt.tokens
        depth, holders = self.kv.match(tokens, usable) if tokens and self.kv else (0, 0)
        exact = depth > 0
        if not exact:
            depth, holders = self.index.match(prompt.keys, usable)
        if not depth:
            return least
        affine = min(
            (p for p, c in enumerate(ready) if holders >> c.index & 1),
            key=lambda p: ready[p].outstanding,
        )
        load = ready[affine].outstanding
        mean = sum(c.outstanding for c in ready) / len(ready)
        if load > SPILL_RATIO * mean and load >= mean + SPILL_MARGIN:
            self.stats.spills += 1
            return least
        self.stats.affinity_hits += 1
        self.stats.exact_hits += exact
        return affine

    def _least_loaded(self, ready: Sequence[Candidate]) -> int:
        count = len(ready)
        self._turn += 1
        turn = self._turn
        return min(range(count), key=lambda p: (ready[p].outstanding, (p + turn) % count))
