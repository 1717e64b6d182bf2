"""Chutes loaded on demand: started by their first request, kept for `keep_alive`, stopped to
make room — as Ollama keeps models, with the engines chutebox runs.

The supervisor plans an on-demand chute like any other (its replicas, GPUs or cores) but
starts nothing: the chute is `unloaded`. A request for it waits while its engines start
(`load_timeout`, then 503 with the reason; every request arriving meanwhile waits for the
same load). Before a load, room is made by unloading the least recently used idle on-demand
chutes — never one with a request in flight or waiting: to keep `max_loaded`, to free the
GPUs it is planned on, or on CPU the host memory it needs; when only chutes that are always
loaded stand in the way, the request gets 503 saying so. A loaded on-demand chute with no
request for `keep_alive` is unloaded (its engines stopped or put to sleep).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from runtime.errors import EngineUnavailableError
from runtime.fleet.chutes import IDLE_GRACE, RESTING, Chute, ChuteSet, ChuteState

log = logging.getLogger("chutebox.supervisor")
TICK = 0.5
# How often a load waiting for room looks again (for a chute still serving to go idle).
ROOM_POLL = 0.1

Action = Callable[[Chute], Awaitable[None]]


class OnDemand:
    """Loads, keeps and unloads the on-demand chutes; `start` and `stop` run a chute's
    engines (the supervisor's)."""

    def __init__(
        self,
        chutes: ChuteSet,
        max_loaded: int,
        start: Action,
        stop: Action,
        clock: Callable[[], float] = time.monotonic,
        available_gb: Callable[[], float] = lambda: float("inf"),
    ) -> None:
        self.chutes = chutes
        self.max_loaded = max_loaded
        self.start = start
        self.stop = stop
        self.clock = clock
        # The host's available memory now (GB), for chutes loaded on CPU.
        self.available_gb = available_gb
        self.planned = asyncio.Event()
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._room = asyncio.Lock()

    async def load(self, chute: Chute) -> None:
        """Return once `chute` is ready, loading it if it is not (503 after `load_timeout`)."""
        chute.last_used = self.clock()
        await self.planned.wait()
        if chute.state is ChuteState.READY:
            return
        if chute.phase is ChuteState.FAILED:
            chute.require_ready()
        load = self._loading.get(chute.name)
        if load is None:
            load = self._loading[chute.name] = asyncio.ensure_future(self._load(chute))
            load.add_done_callback(lambda _: self._loading.pop(chute.name, None))
        timeout = chute.settings.load_timeout
        try:  # a request that gives up (or leaves) does not stop the load for the next one
            await asyncio.wait_for(asyncio.shield(load), timeout)
        except TimeoutError:
            raise EngineUnavailableError(
                f"No instances available (yet) for chute {chute.name}: still loading after "
                f"{timeout:.0f}s (load_timeout); retry",
                headers={"Retry-After": "10"},
            ) from None

    async def _load(self, chute: Chute) -> None:
        async with self._room:
            await self._make_room(chute)
            began = self.clock()
            log.info("[%s] loading on demand", chute.name)
            await self.start(chute)
        deadline = began + chute.settings.startup_timeout
        while chute.state is not ChuteState.READY:
            if chute.state in RESTING or self.clock() > deadline:
                reason = chute.detail or next((r.detail for r in chute.replicas if r.detail), "")
                await self._unload(chute, "its load failed")
                raise EngineUnavailableError(
                    f"No instances available for chute {chute.name}: its load failed: "
                    f"{reason or 'not ready in time'}",
                    headers={"Retry-After": "30"},
                )
            await asyncio.sleep(0.1)
        took = self.clock() - began
        chute.loads += 1
        chute.load_seconds += took
        chute.last_used = self.clock()
        log.info("[%s] loaded in %.1fs", chute.name, took)

    def loaded(self) -> list[Chute]:
        return [c for c in self.chutes if c.state not in RESTING]

    def _unloadable(self, chute: Chute, now: float) -> bool:
        return (
            chute.on_demand
            and chute.state not in RESTING
            and chute.idle
            and chute.name not in self._loading
            and now - chute.last_used >= IDLE_GRACE
        )

    async def _make_room(self, chute: Chute) -> None:
        """Unload least recently used idle on-demand chutes until `chute` fits: under
        `max_loaded`, on GPUs no loaded chute on its GPUs (a vLLM engine takes most of each
        GPU it runs on), on CPU the host's available memory holding what it needs. An
        on-demand chute still serving is waited for (up to `load_timeout`), never unloaded
        under its requests; 503 when what stands in the way is always loaded, or the wait
        ran out."""
        deadline = self.clock() + chute.settings.load_timeout
        while (crowd := self._in_the_way(chute)) is not None:
            now = self.clock()
            idle = [c for c in crowd if self._unloadable(c, now)]
            if idle:
                victim = min(idle, key=lambda c: c.last_used)
                await self._unload(victim, f"making room for {chute.name}")
                continue
            waitable = any(c.on_demand for c in crowd)
            if not waitable or now > deadline:
                names = ", ".join(c.name for c in crowd) or "nothing to unload"
                why = "busy" if waitable else "always loaded"
                raise EngineUnavailableError(
                    f"No room to load chute {chute.name}: {self._room_reason(chute)}; in the "
                    f"way: {names} ({why}); retry",
                    headers={"Retry-After": "10"},
                )
            await asyncio.sleep(ROOM_POLL)

    def _in_the_way(self, chute: Chute) -> list[Chute] | None:
        """The loaded chutes whose unloading would make room for `chute` (None: it fits)."""
        others = [c for c in self.loaded() if c is not chute]
        if chute.gpus:
            sharing = [c for c in others if c.gpus & chute.gpus]
            if sharing:
                return sharing
        if self.max_loaded and len(others) >= self.max_loaded:
            return others
        if not chute.gpus and chute.host_memory_gb > self.available_gb():
            return [c for c in others if not c.gpus]
        return None

    def _room_reason(self, chute: Chute) -> str:
        others = [c for c in self.loaded() if c is not chute]
        if chute.gpus and any(c.gpus & chute.gpus for c in others):
            return f"its GPUs ({', '.join(map(str, sorted(chute.gpus)))}) are in use"
        if self.max_loaded and len(others) >= self.max_loaded:
            return f"{len(others)} chutes loaded (max_loaded {self.max_loaded})"
        need, free = chute.host_memory_gb, self.available_gb()
        return f"it needs {need:.1f} GB of host memory, {free:.1f} GB is available"

    async def _unload(self, chute: Chute, reason: str) -> None:
        log.info("[%s] unloading: %s", chute.name, reason)
        await self.stop(chute)
        chute.unloads += 1

    def unloads_in(self, chute: Chute) -> float | None:
        """Seconds until an idle on-demand chute unloads (None: not counting down)."""
        if chute.name in self._loading:
            return None
        return chute.unloads_in(self.clock(), IDLE_GRACE)

    async def keep(self) -> None:
        """Unload each on-demand chute idle for its `keep_alive`, until cancelled."""
        while True:
            await asyncio.sleep(TICK)
            for chute in self.chutes:
                left = self.unloads_in(chute)
                if left is None or left > 0:
                    continue
                async with self._room:
                    if self._unloadable(chute, self.clock()):
                        await self._unload(chute, f"idle for {chute.keep_alive:g}s")
