"""Making sure the replica a request landed on holds its LoRA adapter, through vLLM's runtime
loading (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`) on the engine's private link.
The engine knows an adapter by its public name, `CHUTE:ADAPTER`, so that its replies name the
model the client asked for.

Concurrent first requests for an adapter on one replica load it once (a lock per adapter);
past the chute's `adapter_slots` the replica's least recently used adapter that no request is
using is unloaded first (when every one is in use, the engine holds one more for now).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from runtime.errors import EngineDownError, EngineError, from_engine_body
from runtime.fleet.chutes import Chute, Lease
from runtime.http.engine_client import Upstream

log = logging.getLogger("chutebox.routing")
LOAD = "/v1/load_lora_adapter"
UNLOAD = "/v1/unload_lora_adapter"


async def _post(
    upstream: Upstream, lease: Lease, path: str, body: dict[str, str]
) -> EngineError | None:
    """The engine's error answer, or None when it did it."""
    response = await upstream.send(lease.endpoint, "POST", path, json.dumps(body).encode())
    async with response:
        reply = await response.read()
    return None if response.status == 200 else from_engine_body(response.status, reply)


async def hold_adapter(upstream: Upstream, lease: Lease, chute: Chute, adapter: str) -> None:
    """Load `adapter` into the lease's replica unless it holds it, and count the request in;
    a replica that refuses the connection is left for another ready one, as a request is."""
    while True:
        try:
            return await _hold(upstream, lease, chute, adapter)
        except EngineDownError as exc:
            lease.fail_over(exc.message)


async def _hold(upstream: Upstream, lease: Lease, chute: Chute, adapter: str) -> None:
    slots = lease.replica.adapters
    where = f"{chute.name}/{lease.replica.index}"
    async with slots.lock(adapter):
        if adapter not in slots.held:
            while len(slots.held) >= chute.settings.adapter_slots:
                victim = slots.evictable()
                if victim is None:
                    break
                await _post(upstream, lease, UNLOAD, {"lora_name": f"{chute.name}:{victim}"})
                del slots.held[victim]
                slots.unloads += 1
                log.info("[%s] adapter %s unloaded to make room for %s", where, victim, adapter)
            path = str(Path(chute.settings.adapters[adapter]).expanduser())
            body = {"lora_name": f"{chute.name}:{adapter}", "lora_path": path}
            refused = await _post(upstream, lease, LOAD, body)
            if refused is not None and "already" not in refused.message:
                refused.message = f"adapter {adapter} could not be loaded: {refused.message}"
                raise refused
            slots.held[adapter] = None
            slots.loads += 1
            log.info("[%s] adapter %s loaded", where, adapter)
        slots.use(adapter)
    lease.adapter = adapter
