"""The chutes being served, their replicas, and routing a request's `model` to one.

A chute has one or more replicas (engine processes, each on its own GPUs or cores). The
supervisor moves their states; routes lease a ready replica, chosen by the chute's routing
policy (`runtime.fleet.routing`): the fewest requests outstanding, or the replica holding the
longest prefix of the prompt. A replica that refuses a connection is marked unreachable at
once by the request that found it (the supervisor then probes it), and the request moves to
another ready replica: nothing reached the engine, so sending it elsewhere is safe.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.config.settings import ChuteSettings
from runtime.errors import EngineUnavailableError, InvalidRequestError, NotFoundError
from runtime.fleet.adapters import AdapterSlots
from runtime.fleet.admission import Admission
from runtime.fleet.backend import EngineBackend
from runtime.fleet.cords import ChuteCode, template_chute_id
from runtime.fleet.routing.policy import Prompt, Router, RoutingPolicy
from runtime.fleet.speed import Speed
from runtime.http.engine_client import Endpoint
from runtime.planner.plan import ReplicaPlan
from runtime.protocol.fields import EngineFields
from runtime.protocol.rewrite import split_thinking

log = logging.getLogger("chutebox.supervisor")
RETRY_AFTER = {"Retry-After": "5"}
# How often a request waiting for a replica to come back looks again (a restart takes seconds
# to minutes; the wait is rare, the check cheap).
RELOCATE_POLL = 0.2
# An on-demand chute used within this many seconds is not idle, whatever its keep_alive: a
# request that found it loaded may not hold its slot yet.
IDLE_GRACE = 1.0


class ChuteState(enum.Enum):
    PREPARING = "preparing"
    STARTING = "starting"
    READY = "ready"
    # The engine refused or reset a connection; the supervisor is probing it.
    UNREACHABLE = "unreachable"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"
    # An on-demand chute with no engine running: the next request loads it.
    UNLOADED = "unloaded"
    # An on-demand chute whose engines sleep (GPU memory freed): the next request wakes it.
    SLEEPING = "sleeping"


# States in which a chute holds no device memory (an on-demand chute's `unloaded` and
# `sleeping` included): what `max_loaded` does not count.
RESTING = frozenset({ChuteState.UNLOADED, ChuteState.SLEEPING, ChuteState.FAILED,
                     ChuteState.STOPPED, ChuteState.PREPARING})  # fmt: skip


@dataclass
class Replica:
    """One engine process of a chute."""

    index: int
    plan: ReplicaPlan = field(default_factory=lambda: ReplicaPlan(()))
    cpu_ids: tuple[int, ...] = ()
    state: ChuteState = ChuteState.STARTING
    endpoint: Endpoint | None = None
    outstanding: int = 0
    # Of those, the requests with no output back yet, and the prompt blocks they have to
    # compute (the prefix router weighs them: runtime.fleet.routing.policy).
    waiting: int = 0
    queued_blocks: int = 0
    detail: str = ""
    restarts: int = 0
    # The engine's address and key when chutebox does not start it (a chute's `url`).
    remote: Endpoint | None = None
    # Set by a request that found the engine refusing connections: the supervisor probes now.
    suspect: asyncio.Event = field(default_factory=asyncio.Event)
    # Its engine can sleep (vLLM's sleep mode), and the level it sleeps at (0: awake).
    sleep_mode: bool = False
    slept: int = 0
    # The LoRA adapters its engine holds (runtime.fleet.adapters).
    adapters: AdapterSlots = field(default_factory=AdapterSlots)

    def mark_unreachable(self, reason: str) -> bool:
        """Out of service until the supervisor's probe answers; False if it already was."""
        if self.state is not ChuteState.READY:
            return False
        self.state, self.detail = ChuteState.UNREACHABLE, reason
        self.suspect.set()
        return True

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state.value, "outstanding": self.outstanding}
        if self.remote is not None:
            info["url"] = self.remote.address
        if self.plan.visible_devices:
            info["gpus"] = self.plan.visible_devices
        if len(self.plan.placements) > 1:
            info["nodes"] = len(self.plan.placements)
        if self.detail:
            info["detail"] = self.detail
        return info


@dataclass
class Chute:
    """One served model at run time.

    `phase` is the chute's own stage (preparing its model, failed, stopped); once its replicas
    exist (phase STARTING) the chute's state is read from them.
    """

    settings: ChuteSettings
    backend: EngineBackend
    admission: Admission
    replicas: list[Replica] = field(default_factory=list)
    phase: ChuteState = ChuteState.PREPARING
    card: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    # What the engine's /openapi.json says each route reads; read at its first readiness.
    fields: EngineFields | None = None
    # Why the planner laid the replicas out as it did (what `chutebox plan` prints).
    plan_reasons: tuple[str, ...] = ()
    # The engines at the chute's `url`s (with their key), when chutebox starts none.
    remote: tuple[Endpoint, ...] = ()
    # A custom chute's cords, owner and id (None for a model on a template).
    code: ChuteCode | None = None
    # Its measured prompt and output tokens per second (model lists order by them).
    speed: Speed = field(default_factory=Speed)
    # When a request last ended here (monotonic; on-demand chutes unload after keep_alive),
    # and its loads and unloads so far, with the seconds its loads took.
    last_used: float = 0.0
    # Seconds it stays loaded once idle (None: for ever); a request's `keep_alive` sets it
    # (as Ollama's does), else the chute's setting.
    keep_alive: float | None = field(init=False)
    loads: int = 0
    unloads: int = 0
    load_seconds: float = 0.0
    # Of those, the ones that were a sleep and a wake (GPU engines in sleep mode).
    sleeps: int = 0
    wakes: int = 0
    # Host memory its engines take when loaded on CPU (weights, KV cache and the engine
    # process itself), when known: what an on-demand load needs free.
    host_memory_gb: float = 0.0
    # The served name, fixed when the chute is made (the request path reads it often).
    name: str = field(init=False)
    router: Router = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.settings.served_name
        self.keep_alive = self.settings.keep_alive_seconds
        self.router = Router(
            RoutingPolicy(self.settings.routing), self.settings.routing_memory_mb << 20
        )

    @property
    def on_demand(self) -> bool:
        return self.settings.load == "on-demand"

    @property
    def gpus(self) -> frozenset[int]:
        """The GPUs its replicas are planned on (this node's)."""
        return frozenset(g for r in self.replicas for p in r.plan.placements[:1] for g in p.gpus)

    def adapter_of(self, model: str | None) -> str | None:
        """The LoRA adapter a request's `model` names (`CHUTE:ADAPTER`), if any."""
        if not model or model == self.name or not self.settings.adapters:
            return None
        base, _, adapter = model.rpartition(":")
        return adapter if base == self.name and adapter in self.settings.adapters else None

    @property
    def idle(self) -> bool:
        """No request holds or waits for a slot here."""
        return self.admission.used == 0 and self.admission.waiting == 0

    def unloads_in(self, now: float, grace: float) -> float | None:
        """Seconds until an idle, loaded on-demand chute reaches its keep_alive (None: not
        counting down); never under `grace` after its last use."""
        keep = self.keep_alive
        if not self.on_demand or keep is None or not self.idle:
            return None
        if self.state in RESTING:
            return None
        return max(0.0, max(keep, grace) - (now - self.last_used))

    @property
    def chute_id(self) -> str:
        """A stable id, as the platform's `/chutes/{chute-id}/...` names a chute."""
        return self.code.chute_id if self.code is not None else template_chute_id(self.name)

    @property
    def engine_model(self) -> str:
        """The `model` the engine is sent: the served name of engines chutebox starts (it
        names them so), the name a remote engine serves (the chute's `model`)."""
        return self.settings.model if self.remote else self.name

    @property
    def state(self) -> ChuteState:
        if self.phase is not ChuteState.STARTING or not self.replicas:
            return self.phase
        states = {r.state for r in self.replicas}
        order = (ChuteState.READY, ChuteState.UNREACHABLE, ChuteState.RESTARTING,
                 ChuteState.STARTING, ChuteState.SLEEPING)  # fmt: skip
        for state in order:
            if state in states:
                return state
        return ChuteState.FAILED if states == {ChuteState.FAILED} else ChuteState.STOPPED

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas if r.state is ChuteState.READY and r.endpoint]

    def lookup_endpoint(self) -> Endpoint | None:
        """A ready replica's endpoint for a side call (no slot, not counted)."""
        ready = self.ready()
        return min(ready, key=lambda r: r.outstanding).endpoint if ready else None

    def available(self) -> bool:
        """Ready, with a concurrency slot free: a model list tries such chutes first."""
        return self.state is ChuteState.READY and self.admission.used < self.admission.limit

    def require_ready(self) -> None:
        if self.state is ChuteState.READY:
            return
        # A remote replica's reason names only its URL and what it answered; a local one's
        # may hold its engine's log lines, which stay in /ready and the log.
        details = [r.detail for r in self.replicas if r.detail and r.remote]
        reason = self.detail or (details[0] if details else f"its engine is {self.state.value}")
        raise EngineUnavailableError(
            f"No instances available (yet) for chute {self.name}: {reason}", headers=RETRY_AFTER
        )

    def pick(self, prefer: int | None = None, prompt: Prompt | None = None) -> tuple[Replica, int]:
        """Replica `prefer` when it is ready (the one holding state the request needs), else
        the one the router chooses for `prompt`; and the prompt blocks the request would
        queue there."""
        ready = self.ready()
        if not ready:
            self.require_ready()
            raise EngineUnavailableError(
                f"No instances available (yet) for chute {self.name}", headers=RETRY_AFTER
            )
        for replica in ready:
            if replica.index == prefer:
                return replica, prompt.blocks if prompt is not None else 0
        choice = self.router.choose(ready, prompt)
        return ready[choice.position], choice.blocks


class Lease:
    """A request's place on one ready replica; it moves when that replica is found down.
    `slot`: the request holds one of the chute's admission slots, given back with the
    lease. Until `started`, the request counts as waiting on its replica, with the prompt
    blocks it has to compute there."""

    def __init__(
        self,
        chute: Chute,
        prefer: int | None = None,
        prompt: Prompt | None = None,
        slot: bool = False,
    ) -> None:
        self.chute = chute
        self.prompt = prompt
        self.slot = slot
        # The LoRA adapter the request uses on its replica, once held there.
        self.adapter: str | None = None
        self._waiting = True
        self._queued = 0
        self.replica = self._join(prefer)

    @property
    def endpoint(self) -> Endpoint:
        endpoint = self.replica.endpoint
        if endpoint is None:  # stopped between the pick and now
            raise EngineUnavailableError(
                f"No instances available (yet) for chute {self.chute.name}", headers=RETRY_AFTER
            )
        return endpoint

    def started(self) -> None:
        """The engine's first output came back: the prompt is computed."""
        if self._waiting:
            self._count(self.replica, -1, outstanding=False)
            self._waiting = False

    def fail_over(self, reason: str) -> Endpoint:
        """The replica refused the request before any byte of it was read: mark it
        unreachable, and move to another ready replica (503 with Retry-After if none)."""
        replica = self.replica
        if replica.mark_unreachable(reason):
            log.warning("[%s/%d] %s; marked unreachable", self.chute.name, replica.index, reason)
        self._leave()
        try:
            self.replica = self._join()
        except EngineUnavailableError:
            self._rejoin(replica)
            raise
        self._leave_adapter(replica)
        return self.endpoint

    async def relocate(self, reason: str, wait: float) -> Endpoint:
        """The replica broke off a request it had taken (its engine died under it): mark it
        unreachable and move to a ready replica, waiting up to `wait` seconds for one (the
        same replica, restarted) when none is ready (then 503 with Retry-After)."""
        replica = self.replica
        if replica.mark_unreachable(reason):
            log.warning("[%s/%d] %s; marked unreachable", self.chute.name, replica.index, reason)
        self._leave()
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    self.replica = self._join()
                    self._leave_adapter(replica)
                    return self.endpoint
                except EngineUnavailableError:
                    if time.monotonic() >= deadline:
                        raise
                await asyncio.sleep(RELOCATE_POLL)
        except BaseException:
            self._rejoin(replica)
            raise

    def _join(self, prefer: int | None = None) -> Replica:
        """Counts the request in on the replica chosen for it."""
        replica, self._queued = self.chute.pick(prefer, self.prompt)
        self._count(replica, 1)
        return replica

    def _leave(self) -> None:
        self._count(self.replica, -1)

    def _rejoin(self, replica: Replica) -> None:
        """No replica took it: it stays counted on `replica` until `release`."""
        self.replica = replica
        self._count(replica, 1)

    def _count(self, replica: Replica, step: int, outstanding: bool = True) -> None:
        """The one place the request's account on a replica changes: its outstanding count
        and, while it waits for its first output, its place in the queue."""
        if outstanding:
            replica.outstanding += step
        if self._waiting:
            replica.waiting += step
            replica.queued_blocks += step * self._queued

    def _leave_adapter(self, replica: Replica) -> None:
        """The request moved off `replica`: its adapter there is no longer in use by it (the
        replica it moved to must hold it again: `runtime.api.relay.adapters`)."""
        if self.adapter is not None:
            replica.adapters.done(self.adapter)
            self.adapter = None

    def release(self) -> None:
        if self.adapter is not None:
            self.replica.adapters.done(self.adapter)
        self._leave()
        if self.slot:
            self.chute.admission.release()
        self.chute.last_used = time.monotonic()


# Model-list suffixes: order by prompt tokens per second (`:latency`) or output tokens per
# second (`:throughput`), the fastest first.
LATENCY, THROUGHPUT = ":latency", ":throughput"
ORDERS = (LATENCY, THROUGHPUT)


def _speed_key(chute: Chute, order: str) -> tuple[bool, float]:
    measured = chute.speed.prompt_tps if order == LATENCY else chute.speed.output_tps
    return (measured is None, -(measured or 0.0))


class ChuteSet:
    """All chutes of this gateway, looked up by the name clients send as `model`."""

    def __init__(self, chutes: Iterable[Chute]) -> None:
        self._by_name = {c.name: c for c in chutes}
        # The gateway's shutdown, which its requests watch: draining refuses new ones; a
        # stop (a second signal, or the drain's time up) ends the relays still running.
        self.draining = False
        self.stopping = False
        self.relays: set[asyncio.Task[Any]] = set()
        # Loads an on-demand chute's engines (the supervisor sets it; None: nothing loads).
        self.loader: Callable[[Chute], Awaitable[None]] | None = None

    def stop_relays(self) -> None:
        """End every relay in flight: each answers 503, or an error event mid-stream."""
        self.stopping = True
        for task in list(self.relays):
            task.cancel()

    def __iter__(self) -> Iterator[Chute]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Chute | None:
        return self._by_name.get(name)

    def resolve(self, model: str) -> tuple[Chute, bool]:
        """The chute for `model` (`CHUTE:ADAPTER` names one of its LoRA adapters), and
        whether the `:THINKING` suffix asked for thinking."""
        chute = self._by_name.get(model)
        if chute is not None:  # the name itself (a suffix that is part of a name stays)
            return chute, False
        base, _, adapter = model.rpartition(":")
        chute = self._by_name.get(base)
        if chute is not None and adapter in chute.settings.adapters:
            return chute, False
        name, thinking = split_thinking(model)
        chute = self._by_name.get(name)
        if chute is None:
            raise NotFoundError(f"model not found: {model}", param="model", code="model_not_found")
        return chute, thinking

    def candidates(self, model: str) -> list[tuple[Chute, bool]]:
        """The chutes a request's `model` names, in the order to try them: one (a name, with
        or without `:THINKING`), or a Chutes model list — `a,b,c`, optionally ending in
        `:latency` or `:throughput` — with the chutes ready and not at capacity first, in the
        list's order or, with a suffix, the fastest first (prompt or output tokens per second
        as measured here; unmeasured ones after). A name that holds a comma or colon itself
        wins first. 404 when the list names no chute here."""
        if model in self._by_name or "," not in model and not model.endswith(ORDERS):
            return [self.resolve(model)]
        names, order = model, ""
        for suffix in ORDERS:
            if names.endswith(suffix):
                names, order = names[: -len(suffix)], suffix
        found = []
        for name in (n.strip() for n in names.split(",")):
            try:
                found.append(self.resolve(name))
            except NotFoundError:
                continue  # an unknown name in a list is passed over, as one at capacity is
        if not found:
            raise NotFoundError(
                f"model not found: no chute here is named in {model!r}",
                param="model",
                code="model_not_found",
            )
        if order:
            found.sort(key=lambda pair: _speed_key(pair[0], order))
        found.sort(key=lambda pair: not pair[0].available())
        return found

    def only_with(self, capability: str) -> Chute:
        """The one chute that serves `capability`, for requests that may omit `model`."""
        matches = [c for c in self if capability in c.backend.capabilities]
        if not matches:
            raise NotFoundError(f"no chute here serves {capability}", param="model",
                                code="model_not_found")  # fmt: skip
        if len(matches) > 1:
            names = ", ".join(c.name for c in matches)
            raise InvalidRequestError(
                f"model: several chutes serve {capability} ({names}); name one", param="model"
            )
        return matches[0]

    def all_ready(self) -> bool:
        """Every chute that is always loaded is ready (on-demand ones load when asked)."""
        return all(c.state is ChuteState.READY for c in self if not c.on_demand)

    async def ensure_loaded(self, chute: Chute) -> float:
        """Load an on-demand chute that is not loaded (or wait for the load under way):
        the seconds it took, 0.0 when it was ready. What the loader raises (503 with the
        reason) reaches the request."""
        if not chute.on_demand or self.loader is None or chute.state is ChuteState.READY:
            return 0.0
        asked = time.monotonic()
        await self.loader(chute)
        return time.monotonic() - asked
