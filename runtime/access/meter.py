"""Metering: what each request used, summed per key, chute and minute, written to SQLite off
the request path.

A request's counts go into a dictionary in memory; a background task writes it to the store
every second in a worker thread, and the last of it when the gateway stops (SIGTERM
included: the lifespan's end flushes). The day's invocations per key and chute, which the
quotas read, are loaded from the store at start, so a restart forgets nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.access.store import Counts, Slot, UsageStore

log = logging.getLogger("chutebox.usage")
FLUSH_SECONDS = 1.0
# Minutes of recent usage kept in memory for the status page's chart.
RECENT_MINUTES = 60


def day_start(now: float) -> int:
    """Unix seconds of the UTC midnight that began the day of `now`."""
    return int(now // 86400 * 86400)


def next_midnight(now: float) -> str:
    """The UTC midnight ending the day of `now`, as Chutes writes it (ISO 8601)."""
    start = datetime.fromtimestamp(day_start(now), UTC)
    return (start + timedelta(days=1)).isoformat()


class Meter:
    """Usage per key, chute and minute, on its way to the store; the day's invocations."""

    def __init__(self, store: UsageStore, clock: Any = time.time) -> None:
        self.store = store
        self.clock = clock
        self.pending: dict[Slot, Counts] = {}
        self.recent: dict[Slot, Counts] = {}
        # Since this gateway started, per (key, chute): what the per-key metrics count.
        self.totals: dict[tuple[str, str], Counts] = {}
        self._day = day_start(clock())
        self._today: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._today.update(store.requests_since(self._day))
        self._lock = asyncio.Lock()
        self._minute = 0

    # Invocations per UTC day, for the quotas: counted at admission, so requests in flight
    # hold their place; given back for one refused before any work.
    def invocations(self, key: str, chutes: list[str] | None = None) -> int:
        """Today's invocations by `key` of `chutes` (None: of every chute)."""
        self._roll()
        counted = self._today.items()
        return sum(n for (k, c), n in counted if k == key and (chutes is None or c in chutes))

    def invoked(self, key: str, chute: str) -> int:
        """Count one invocation now; returns the day it counts in (for `uninvoked`)."""
        self._roll()
        self._today[(key, chute)] += 1
        return self._day

    def uninvoked(self, key: str, chute: str, day: int) -> None:
        if day == self._day and self._today[(key, chute)] > 0:
            self._today[(key, chute)] -= 1

    def _roll(self) -> None:
        day = day_start(self.clock())
        if day != self._day:
            self._day = day
            self._today.clear()

    def record(self, key: str, chute: str, counts: Counts) -> None:
        """Add a finished request's counts to its minute (written at the next flush)."""
        minute = int(self.clock() // 60 * 60)
        slot = (key, chute, minute)
        for table in (self.pending, self.recent):
            if slot in table:
                table[slot].add(counts)
            else:
                table[slot] = replace(counts)
        self.totals.setdefault((key, chute), Counts()).add(counts)
        if minute != self._minute:
            self._minute = minute
            self._trim(minute)

    def _trim(self, minute: int) -> None:
        oldest = minute - RECENT_MINUTES * 60
        for slot in [s for s in self.recent if s[2] < oldest]:
            del self.recent[slot]

    def series(self) -> list[dict[str, Any]]:
        """The last hour's tokens per minute per key and chute, for the status page."""
        self._trim(int(self.clock() // 60 * 60))
        return [
            {"key": key, "chute": chute, "minute": minute, **counts.as_dict()}
            for (key, chute, minute), counts in sorted(self.recent.items(), key=lambda i: i[0][2])
        ]

    async def flush(self) -> None:
        """Write what is pending to the store (a failed write is kept for the next try)."""
        async with self._lock:
            if not self.pending:
                return
            rows, self.pending = self.pending, {}
            try:
                await asyncio.to_thread(self.store.add, rows)
            except Exception as exc:
                log.error("usage could not be written to %s: %s; retrying", self.store, exc)
                for slot, counts in rows.items():
                    self.pending.setdefault(slot, Counts()).add(counts)

    async def run(self, interval: float = FLUSH_SECONDS) -> None:
        """Flush every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def by_day(self, key: str, chutes: list[str] | None = None) -> list[dict[str, Any]]:
        await self.flush()
        async with self._lock:
            return await asyncio.to_thread(self.store.by_day, key, chutes)

    async def close(self) -> None:
        await self.flush()
        async with self._lock:
            self.store.close()
