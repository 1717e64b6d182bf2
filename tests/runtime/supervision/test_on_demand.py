"""Loading, keeping and unloading on-demand chutes, with engines that are stand-ins: the
start and stop actions move replica states as the supervisor's do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engines.fake import FakeBackend
from runtime.config.settings import ChuteSettings
from runtime.errors import EngineUnavailableError
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Replica
from runtime.planner.plan import Placement, ReplicaPlan
from runtime.supervision.on_demand import OnDemand


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Engines:
    """Start and stop actions: a start makes every replica ready after `delay` seconds (or
    failed, for the chutes in `failing`)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.failing: set[str] = set()

    async def start(self, chute: Chute) -> None:
        self.started.append(chute.name)
        chute.phase = ChuteState.STARTING
        for replica in chute.replicas:
            replica.state = ChuteState.STARTING
        asyncio.get_running_loop().call_later(self.delay, self._ready, chute)

    def _ready(self, chute: Chute) -> None:
        if chute.phase is not ChuteState.STARTING:
            return
        failed = chute.name in self.failing
        for replica in chute.replicas:
            replica.state = ChuteState.FAILED if failed else ChuteState.READY
            replica.detail = "engine exited with code 1" if failed else ""

    async def stop(self, chute: Chute) -> None:
        self.stopped.append(chute.name)
        chute.phase = ChuteState.UNLOADED
        for replica in chute.replicas:
            replica.state = ChuteState.UNLOADED


def chute(folder: Path, name: str, **settings: Any) -> Chute:
    fields = {"model": str(folder), "name": name, "engine": "fake", "load": "on-demand"}
    return Chute(
        settings=ChuteSettings.model_validate({**fields, **settings}),
        backend=FakeBackend(),
        admission=Admission(4),
        replicas=[Replica(0, state=ChuteState.UNLOADED)],
        phase=ChuteState.UNLOADED,
    )


def setup(
    tmp_path: Path, max_loaded: int = 0, delay: float = 0.0, **settings: object
) -> tuple[ChuteSet, OnDemand, Engines, Clock]:
    engines, clock = Engines(delay), Clock()
    chutes = ChuteSet([chute(tmp_path, "a", **settings), chute(tmp_path, "b", **settings)])
    manager = OnDemand(chutes, max_loaded, engines.start, engines.stop, clock)
    manager.planned.set()
    return chutes, manager, engines, clock


def get(chutes: ChuteSet, name: str) -> Chute:
    found = chutes.get(name)
    assert found is not None
    return found


def test_requests_arriving_during_a_load_share_it(tmp_path: Path) -> None:
    chutes, manager, engines, _ = setup(tmp_path, delay=0.05)

    async def main() -> None:
        await asyncio.gather(*(manager.load(get(chutes, "a")) for _ in range(5)))

    asyncio.run(main())
    a = get(chutes, "a")
    assert engines.started == ["a"] and a.state is ChuteState.READY
    assert a.loads == 1 and a.load_seconds >= 0


def test_room_is_made_by_unloading_the_least_recently_used_idle_chute(tmp_path: Path) -> None:
    chutes, manager, engines, clock = setup(tmp_path, max_loaded=1)
    a, b = get(chutes, "a"), get(chutes, "b")

    async def main() -> None:
        await manager.load(a)
        clock.now += 5
        await manager.load(b)
        assert engines.stopped == ["a"] and a.state is ChuteState.UNLOADED
        clock.now += 5
        b.admission.used = 1  # a request in flight: b is waited for, not unloaded under it
        load = asyncio.ensure_future(manager.load(a))
        await asyncio.sleep(0.3)
        assert not load.done() and b.state is ChuteState.READY and engines.stopped == ["a"]
        b.admission.used = 0  # its request ended: the load that waited goes on
        await load
        assert engines.stopped == ["a", "b"] and a.state is ChuteState.READY

    asyncio.run(main())


def test_a_chute_just_used_is_waited_for_not_refused(tmp_path: Path) -> None:
    chutes, manager, engines, clock = setup(tmp_path, max_loaded=1)

    async def main() -> None:
        await manager.load(get(chutes, "a"))
        clock.now += 0.2  # within the grace: a request that found it may not hold a slot yet
        load = asyncio.ensure_future(manager.load(get(chutes, "b")))
        await asyncio.sleep(0.3)
        assert not load.done() and engines.stopped == []
        clock.now += 1
        await load

    asyncio.run(main())
    assert engines.stopped == ["a"]


def test_no_room_beside_chutes_always_loaded_is_a_503(tmp_path: Path) -> None:
    engines, clock = Engines(), Clock()
    always = chute(tmp_path, "big")
    always.settings = always.settings.model_copy(update={"load": "always"})
    always.phase = ChuteState.STARTING
    always.replicas[0].state = ChuteState.READY
    chutes = ChuteSet([always, chute(tmp_path, "a")])
    manager = OnDemand(chutes, 1, engines.start, engines.stop, clock)
    manager.planned.set()
    with pytest.raises(EngineUnavailableError, match=r"in the way: big \(always loaded\)"):
        asyncio.run(manager.load(get(chutes, "a")))
    assert engines.started == []


def test_keep_alive_unloads_an_idle_chute(tmp_path: Path) -> None:
    chutes, manager, engines, clock = setup(tmp_path, keep_alive="30s")
    a = get(chutes, "a")

    async def main() -> None:
        await manager.load(a)
        keeper = asyncio.ensure_future(manager.keep())
        await asyncio.sleep(0.7)
        assert a.state is ChuteState.READY and manager.unloads_in(a) == 30
        clock.now += 31
        for _ in range(40):
            if a.state is ChuteState.UNLOADED:
                break
            await asyncio.sleep(0.05)
        keeper.cancel()

    asyncio.run(main())
    assert engines.stopped == ["a"] and a.unloads == 1


def test_never_unloaded_with_keep_alive_minus_one(tmp_path: Path) -> None:
    chutes, manager, _, clock = setup(tmp_path, keep_alive="-1")
    a = get(chutes, "a")
    asyncio.run(manager.load(a))
    clock.now += 10**6
    assert manager.unloads_in(a) is None


def test_a_failed_load_is_a_503_with_the_reason_and_unloads(tmp_path: Path) -> None:
    chutes, manager, engines, _ = setup(tmp_path)
    engines.failing.add("a")
    a = get(chutes, "a")
    with pytest.raises(EngineUnavailableError, match="engine exited with code 1"):
        asyncio.run(manager.load(a))
    assert a.state is ChuteState.UNLOADED and engines.stopped == ["a"]


def test_a_slow_load_answers_503_and_goes_on_for_the_next_request(tmp_path: Path) -> None:
    chutes, manager, engines, _ = setup(tmp_path, delay=0.5, load_timeout=0.1)
    a = get(chutes, "a")

    async def main() -> None:
        with pytest.raises(EngineUnavailableError, match="still loading"):
            await manager.load(a)
        await asyncio.sleep(0.6)
        await manager.load(a)

    asyncio.run(main())
    assert engines.started == ["a"] and a.state is ChuteState.READY


def test_readiness_waits_only_for_chutes_always_loaded(tmp_path: Path) -> None:
    chutes, _, _, _ = setup(tmp_path)
    assert chutes.all_ready()


def on_gpu(chute: Chute, *gpus: int) -> Chute:
    chute.replicas[0].plan = ReplicaPlan((Placement("local", gpus),), gpu_id="l4")
    return chute


def test_chutes_planned_on_the_same_gpu_take_turns_others_stay(tmp_path: Path) -> None:
    engines, clock = Engines(), Clock()
    a, b, c = (on_gpu(chute(tmp_path, n), g) for n, g in (("a", 0), ("b", 0), ("c", 1)))
    manager = OnDemand(ChuteSet([a, b, c]), 0, engines.start, engines.stop, clock)
    manager.planned.set()

    async def main() -> None:
        await manager.load(a)
        clock.now += 5
        await manager.load(c)  # GPU 1: a stays
        await manager.load(b)  # GPU 0: a goes
        assert engines.stopped == ["a"]
        assert {x.name for x in manager.loaded()} == {"b", "c"}

    asyncio.run(main())


def test_a_gpu_held_by_an_always_loaded_chute_is_a_503(tmp_path: Path) -> None:
    engines = Engines()
    always = on_gpu(chute(tmp_path, "big"), 0)
    always.settings = always.settings.model_copy(update={"load": "always"})
    always.phase, always.replicas[0].state = ChuteState.STARTING, ChuteState.READY
    manager = OnDemand(ChuteSet([always, on_gpu(chute(tmp_path, "a"), 0)]), 0, engines.start,
                       engines.stop, Clock())  # fmt: skip
    manager.planned.set()
    with pytest.raises(EngineUnavailableError, match=r"GPUs \(0\) are in use.*always loaded"):
        asyncio.run(manager.load(get(manager.chutes, "a")))


def test_on_cpu_a_load_makes_room_in_host_memory(tmp_path: Path) -> None:
    engines, clock, free = Engines(), Clock(), [6.0]
    a, b = chute(tmp_path, "a"), chute(tmp_path, "b")
    a.host_memory_gb = b.host_memory_gb = 4.0

    async def stop(stopped: Chute) -> None:
        await engines.stop(stopped)
        free[0] += 4.0  # its engine's memory given back

    manager = OnDemand(ChuteSet([a, b]), 0, engines.start, stop, clock, lambda: free[0])
    manager.planned.set()

    async def main() -> None:
        await manager.load(a)
        free[0] -= 4.0
        clock.now += 5
        await manager.load(b)
        assert engines.stopped == ["a"] and b.state is ChuteState.READY

    asyncio.run(main())


def test_on_cpu_too_little_memory_with_nothing_to_unload_is_a_503(tmp_path: Path) -> None:
    engines = Engines()
    a = chute(tmp_path, "a")
    a.host_memory_gb = 4.0
    manager = OnDemand(ChuteSet([a]), 0, engines.start, engines.stop, Clock(), lambda: 1.0)
    manager.planned.set()
    with pytest.raises(EngineUnavailableError, match="needs 4.0 GB of host memory, 1.0 GB"):
        asyncio.run(manager.load(a))
    assert engines.started == []
