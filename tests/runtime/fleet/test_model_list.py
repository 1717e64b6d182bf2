"""Which chutes a `model` names, in the order a request tries them."""

from __future__ import annotations

import pytest

from engines.fake import FakeBackend
from runtime.config.settings import ChuteSettings
from runtime.errors import NotFoundError
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Replica
from runtime.http.engine_client import Endpoint


def chute(name: str, ready: bool = True) -> Chute:
    state = ChuteState.READY if ready else ChuteState.STARTING
    replica = Replica(0, state=state, endpoint=Endpoint("http://127.0.0.1:9", ""))
    return Chute(
        settings=ChuteSettings(model="m", name=name),
        backend=FakeBackend(),  # type: ignore[arg-type]
        admission=Admission(1),
        replicas=[replica],
        phase=ChuteState.STARTING,
    )


def names(chutes: ChuteSet, model: str) -> list[tuple[str, bool]]:
    return [(c.name, thinking) for c, thinking in chutes.candidates(model)]


def test_a_name_holding_a_comma_or_colon_wins_first() -> None:
    chutes = ChuteSet([chute("a,b"), chute("a"), chute("b"), chute("c:latency")])
    assert names(chutes, "a,b") == [("a,b", False)]
    assert names(chutes, "c:latency") == [("c:latency", False)]
    assert names(chutes, "b, a:THINKING") == [("b", False), ("a", True)]


def test_ready_chutes_with_a_slot_come_first_then_the_rest_in_order() -> None:
    busy, down = chute("busy"), chute("down", ready=False)
    assert busy.admission.take()
    chutes = ChuteSet([busy, down, chute("free")])
    assert names(chutes, "busy,down,free,nope") == [
        ("free", False),
        ("busy", False),
        ("down", False),
    ]
    with pytest.raises(NotFoundError):
        chutes.candidates("nope,none:throughput")


def test_a_suffix_orders_by_measured_speed_unmeasured_last() -> None:
    slow, fast, new = chute("slow"), chute("fast"), chute("new")
    slow.speed.output_tps, fast.speed.output_tps = 10.0, 50.0
    slow.speed.prompt_tps, fast.speed.prompt_tps = 900.0, 300.0
    chutes = ChuteSet([slow, fast, new])
    assert [n for n, _ in names(chutes, "new,slow,fast:throughput")] == ["fast", "slow", "new"]
    assert [n for n, _ in names(chutes, "new,fast,slow:latency")] == ["slow", "fast", "new"]
