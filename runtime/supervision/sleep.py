"""Putting a GPU engine to sleep and waking it, through vLLM's sleep routes on its private link.

Level 1 moves the weights to host memory and drops the KV cache: waking copies them back
(seconds, where a start loads them from disk and compiles). Level 2 drops the weights too:
waking reallocates them, reloads them from the model folder (`reload_weights`, through vLLM's
`/collective_rpc`), then reallocates the KV cache — vLLM's documented order. Level 1 is used
when the host's available memory holds the weights with room to spare.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from runtime.fleet.chutes import Chute, ChuteState, Replica
from runtime.http.engine_client import Endpoint, Upstream
from runtime.supervision.launching import MEMINFO, available_memory_gb

log = logging.getLogger("chutebox.supervisor")
# Host memory kept free beside weights slept at level 1.
HEADROOM = 1.25
CALL_TIMEOUT = 300.0


def sleep_level(weights_gb: float, meminfo: Path = MEMINFO) -> int:
    """1 when the host's available memory holds the weights (and a quarter more), else 2
    (also when it cannot be read)."""
    available = available_memory_gb(meminfo)
    return 1 if available != float("inf") and available >= weights_gb * HEADROOM else 2


async def _post(upstream: Upstream, endpoint: Endpoint, path: str, body: bytes = b"") -> bool:
    try:
        response = await asyncio.wait_for(upstream.send(endpoint, "POST", path, body), CALL_TIMEOUT)
        async with response:
            reply = await response.read()
    except Exception as exc:  # refused, reset, timed out: the engine did not do it
        log.warning("%s%s failed: %s", endpoint.address, path, exc)
        return False
    if response.status != 200:
        log.warning("%s%s answered HTTP %d: %s", endpoint.address, path, response.status,
                    reply[:300])  # fmt: skip
    return response.status == 200


async def sleep_engine(upstream: Upstream, endpoint: Endpoint, level: int) -> bool:
    return await _post(upstream, endpoint, f"/sleep?level={level}")


async def wake_engine(upstream: Upstream, endpoint: Endpoint, level: int) -> bool:
    if level < 2:
        return await _post(upstream, endpoint, "/wake_up")
    reload = json.dumps({"method": "reload_weights"}).encode()
    return (
        await _post(upstream, endpoint, "/wake_up?tags=weights")
        and await _post(upstream, endpoint, "/collective_rpc", reload)
        and await _post(upstream, endpoint, "/wake_up?tags=kv_cache")
    )


async def sleep_chute(upstream: Upstream, chute: Chute, replicas: list[Replica]) -> bool:
    """Put each replica's engine to sleep, each out of service first; False when one would
    not (the chute is then stopped instead)."""
    for replica in replicas:
        assert replica.endpoint is not None
        level = sleep_level(replica.plan.weights_gb)
        replica.state = ChuteState.SLEEPING
        if not await sleep_engine(upstream, replica.endpoint, level):
            return False
        replica.slept = level
        log.info("[%s/%d] asleep (level %d)", chute.name, replica.index, level)
    chute.sleeps += 1
    return True


async def wake_chute(upstream: Upstream, chute: Chute) -> bool:
    """Wake each sleeping replica's engine, back in service once awake; False when one
    would not (the chute is then started afresh)."""
    for replica in chute.replicas:
        if replica.state is not ChuteState.SLEEPING or replica.endpoint is None:
            return False
        if not await wake_engine(upstream, replica.endpoint, replica.slept):
            return False
        replica.state, replica.slept = ChuteState.READY, 0
        log.info("[%s/%d] awake", chute.name, replica.index)
    chute.wakes += 1
    return True
