"""The LoRA adapters each replica's engine holds, least recently used first.

A vLLM chute lists its adapters (`adapters = { name = "folder" }`); each is served as the
model `CHUTE:NAME` and loaded into a replica's engine the first time a request for it lands
there (vLLM's runtime loading). A replica holds at most `adapter_slots`; past them, the least
recently used adapter that no request is using is unloaded. Which replica a request lands
on is the router's choice, keyed by the model it names: an adapter's requests gather on the
replica that holds it, and go to another when the prompts queued there cost more than the
prefix saves — which then loads it too.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass, field


@dataclass
class AdapterSlots:
    """One replica's adapters: held (least recently used first), in use, and a lock per
    adapter so that concurrent first requests load it once."""

    held: OrderedDict[str, None] = field(default_factory=OrderedDict)
    in_use: Counter[str] = field(default_factory=Counter)
    loads: int = 0
    unloads: int = 0
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def lock(self, adapter: str) -> asyncio.Lock:
        return self._locks.setdefault(adapter, asyncio.Lock())

    def use(self, adapter: str) -> None:
        self.held.move_to_end(adapter)
        self.in_use[adapter] += 1

    def done(self, adapter: str) -> None:
        self.in_use[adapter] -= 1
        if self.in_use[adapter] <= 0:
            del self.in_use[adapter]

    def evictable(self) -> str | None:
        """The least recently used adapter no request is using."""
        return next((name for name in self.held if not self.in_use[name]), None)
