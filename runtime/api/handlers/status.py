"""`GET /status`: what runs here, how it is laid out, and the traffic of the last seconds.

The JSON the status page polls. Without a key it says what `/ready` already says to anyone:
each chute's name, engine and state, and its replicas' states. With a configured key (or on a
gateway without auth) it adds what only the operator should see: the model's source, the
routes the engine serves, concurrency in use, queue and limit, each replica's GPUs, parallel
sizes, restarts and last error line, the planner's reasons, prices, live traffic, and what the
router did (requests per replica, prefix affinity hits, spills, blocks tracked), and the last
hour's usage per minute by key name and chute. No key is ever part of it.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from runtime import __version__
from runtime.access.meter import RECENT_MINUTES
from runtime.api.operation import Operation, served_paths
from runtime.api.record import record_of
from runtime.api.state import gateway_of
from runtime.fleet.chutes import IDLE_GRACE, Chute, ChuteSet, Replica
from runtime.observability.traffic import Traffic


def _replica(replica: Replica, full: bool) -> dict[str, Any]:
    info: dict[str, Any] = {"index": replica.index, "state": replica.state.value}
    if not full:
        return info
    info |= {"outstanding": replica.outstanding, "restarts": replica.restarts,
             "detail": replica.detail or None}  # fmt: skip
    if replica.remote is not None:  # its GPUs are the remote engine's own business
        info["url"] = replica.remote.address
        return info
    plan = replica.plan
    info |= {
        "gpus": plan.visible_devices or "cpu", "gpu_id": plan.gpu_id,
        "tensor_parallel": plan.tp, "pipeline_parallel": plan.pp,
        "weights_gb": round(plan.weights_gb, 2), "kv_gb": round(plan.kv_gb, 2),
        "nodes": plan.nodes,
    }  # fmt: skip
    return info


def _chute(
    chute: Chute, traffic: Traffic | None, operations: tuple[Operation, ...], full: bool
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": chute.name,
        "chute_id": chute.chute_id,
        "engine": chute.backend.name,
        "state": chute.state.value,
        "replicas": [_replica(r, full) for r in chute.replicas],
    }
    if not full:
        return info
    settings, admission = chute.settings, chute.admission
    info |= {
        "model": settings.model,
        "revision": settings.revision,
        "detail": chute.detail or None,
        "routes": served_paths(chute, operations) or cord_urls(chute),
        "cords": cord_list(chute),
        "concurrency": {"in_use": admission.used, "limit": admission.limit,
                        "queued": admission.waiting, "rejected_total": admission.rejected},
        "plan": list(chute.plan_reasons),
        "price_per_million": {"prompt": settings.price_prompt,
                              "completion": settings.price_completion},
        "traffic": traffic.snapshot(chute.name) if traffic is not None else None,
        "routing": _routing(chute),
        "load": _load(chute),
    }  # fmt: skip
    return info


def cord_urls(chute: Chute) -> list[str]:
    return [f"/chutes/{chute.name}{c.path}" for c in chute.code.cords] if chute.code else []


def cord_list(chute: Chute) -> list[dict[str, Any]] | None:
    """A custom chute's cords as the page lists them (its playground builds a form from the
    body schema)."""
    if chute.code is None:
        return None
    return [{"function": c.function, "method": c.method, "path": c.path,
             "url": f"/chutes/{chute.name}{c.path}", "stream": c.stream,
             "output_content_type": c.output_content_type, "body_schema": c.body_schema}
            for c in chute.code.cords]  # fmt: skip


def _load(chute: Chute) -> dict[str, Any]:
    """How the chute is loaded: always, or on demand with its keep-alive countdown."""
    info: dict[str, Any] = {"mode": chute.settings.load}
    if not chute.on_demand:
        return info
    now = time.monotonic()
    left = chute.unloads_in(now, IDLE_GRACE)
    info |= {
        "keep_alive_seconds": chute.keep_alive,
        "last_used_seconds_ago": round(now - chute.last_used, 1) if chute.last_used else None,
        "unloads_in_seconds": round(left, 1) if left is not None else None,
        "loads": chute.loads,
        "unloads": chute.unloads,
        "load_seconds_total": round(chute.load_seconds, 2),
        "sleeps": chute.sleeps,
        "wakes": chute.wakes,
    }
    return info


def _routing(chute: Chute) -> dict[str, Any]:
    router = chute.router
    stats = router.stats
    return {
        "policy": router.policy.value,
        "routed": {str(index): count for index, count in sorted(stats.routed.items())},
        "affinity_hits": stats.affinity_hits,
        "spills": stats.spills,
        "exact_hits": stats.exact_hits,
        # Blocks each replica's engine reports holding, where it publishes KV-cache events.
        "engine_blocks": {str(index): count for index, count in router.kv.blocks().items()},
        "tracked_blocks": len(router.index),
        "tracked_bytes": router.index.bytes,
        "max_bytes": router.index.max_bytes,
    }


def status_document(
    chutes: ChuteSet,
    traffic: Traffic | None,
    operations: tuple[Operation, ...],
    *,
    full: bool,
    usage: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`usage`: the last hour's use per minute, key (by name) and chute, in the full view."""
    ready = chutes.all_ready() and not chutes.draining
    state = "ready" if ready else ("draining" if chutes.draining else "not_ready")
    document = {
        "status": state,
        "version": __version__,
        "full": full,
        "chutes": [_chute(c, traffic, operations, full) for c in chutes],
    }
    if full:
        document["usage"] = {"minutes": RECENT_MINUTES, "series": usage or []}
    return document


async def status(request: Request) -> JSONResponse:
    gateway = gateway_of(request)
    full = record_of(request.scope).authenticated or not gateway.auth_required
    usage = gateway.access.meter.series() if full else None
    document = status_document(
        gateway.chutes, gateway.traffic, gateway.operations, full=full, usage=usage
    )
    return JSONResponse(document, headers={"Cache-Control": "no-store"})
