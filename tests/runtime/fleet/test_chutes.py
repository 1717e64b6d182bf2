"""A lease's account on its replica: outstanding, waiting for its first output, and the
prompt blocks it queues there, through moves and release."""

from __future__ import annotations

import asyncio

import pytest

from runtime.config.settings import ChuteSettings
from runtime.errors import EngineUnavailableError
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteState, Lease, Replica
from runtime.fleet.registry import load_backend
from runtime.fleet.routing.policy import Prompt
from runtime.fleet.routing.prefix import prefix_keys
from runtime.http.engine_client import Endpoint

PROMPT = Prompt(prefix_keys("a shared document " * 60, ("m", None)))


def chute(replicas: int) -> Chute:
    ready = [
        Replica(i, state=ChuteState.READY, endpoint=Endpoint(f"http://engine{i}", "k"))
        for i in range(replicas)
    ]
    settings = ChuteSettings(model="m", name="m", replicas=replicas)
    return Chute(settings=settings, backend=load_backend("vllm"), admission=Admission(8),
                 replicas=ready, phase=ChuteState.READY)  # fmt: skip


def account(replica: Replica) -> tuple[int, int, int]:
    return replica.outstanding, replica.waiting, replica.queued_blocks


def test_a_request_waits_with_its_prompt_until_its_first_output() -> None:
    served = chute(2)
    lease = Lease(served, prompt=PROMPT)
    assert account(lease.replica) == (1, 1, PROMPT.blocks)
    lease.started()
    lease.started()  # once only
    assert account(lease.replica) == (1, 0, 0)
    lease.release()
    assert account(lease.replica) == (0, 0, 0)


def test_a_request_released_before_any_output_leaves_no_queue_behind() -> None:
    served = chute(2)
    lease = Lease(served, prompt=PROMPT)
    lease.release()
    assert [account(r) for r in served.replicas] == [(0, 0, 0), (0, 0, 0)]


def test_a_second_request_for_the_prefix_queues_only_the_rest_of_its_prompt() -> None:
    served = chute(2)
    first = Lease(served, prompt=PROMPT)
    first.started()
    second = Lease(served, prompt=PROMPT)
    assert second.replica is first.replica
    assert account(second.replica) == (2, 1, 1)


def test_a_failed_over_request_takes_its_queue_to_the_next_replica() -> None:
    served = chute(2)
    lease = Lease(served, prompt=PROMPT)
    down = lease.replica
    lease.fail_over("refused")
    assert lease.replica is not down
    assert account(down) == (0, 0, 0)
    assert account(lease.replica) == (1, 1, PROMPT.blocks)
    lease.release()
    assert account(lease.replica) == (0, 0, 0)


def test_a_moved_request_that_had_started_does_not_wait_again_and_none_left_keeps_it() -> None:
    served = chute(2)
    lease = Lease(served, prompt=PROMPT)
    lease.started()
    first = lease.replica
    asyncio.run(lease.relocate("engine died", 0))
    assert account(first) == (0, 0, 0)
    assert account(lease.replica) == (1, 0, 0)
    with pytest.raises(EngineUnavailableError):
        asyncio.run(lease.relocate("engine died", 0))  # none ready is left
    lease.release()
    assert [account(r) for r in served.replicas] == [(0, 0, 0), (0, 0, 0)]
