"""A plan as a readable table with its reasons, or as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from runtime.planner.multinode import chutebox_commands, sglang_commands, vllm_ray_commands
from runtime.planner.plan import Plan


def as_json(plan: Plan, models: dict[str, str], config: str = "CONFIG") -> str:
    data: dict[str, Any] = asdict(plan)
    for chute, chute_data in zip(plan.chutes, data["chutes"], strict=True):
        multi = [r for r in chute.replicas if len(r.placements) > 1]
        if multi:
            model = models.get(chute.name, chute.name)
            chute_data["commands"] = {
                "chutebox": chutebox_commands(multi[0], config),
                "vllm_ray": vllm_ray_commands(multi[0], model, chute.name),
                "sglang": sglang_commands(multi[0], model, chute.name),
            }
    return json.dumps(data, indent=2)


def as_table(plan: Plan, models: dict[str, str], config: str = "CONFIG") -> str:
    header = ("chute", "replica", "GPUs", "TP×PP", "weights/GPU", "KV/GPU", "free/GPU")
    rows: list[tuple[str, ...]] = []
    for chute in plan.chutes:
        for i, replica in enumerate(chute.replicas):
            gpus = " + ".join(f"{p.node}:{','.join(map(str, p.gpus))}" for p in replica.placements)
            rows.append((
                chute.name, str(i), f"{gpus or 'cpu'} ({replica.gpu_id})",
                f"{replica.tp}×{replica.pp}", f"{replica.weights_gb:.1f} GB",
                f"{replica.kv_gb:.1f} GB", f"{replica.free_gb:.1f} GB",
            ))  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]  # fmt: skip
    for chute in plan.chutes:
        lines.append(f"\n{chute.name}:")
        lines += [f"  - {reason}" for reason in chute.reasons]
        for replica in (r for r in chute.replicas if len(r.placements) > 1):
            model = models.get(chute.name, chute.name)
            count = len(replica.placements)
            lines.append(
                f"  on each node (its entry says nodes = {count}; the leader serves the API):"
            )
            lines += [f"    {c}" for c in chutebox_commands(replica, config)]
            lines.append("  or by hand, vLLM on Ray:")
            lines += [f"    {c}" for c in vllm_ray_commands(replica, model, chute.name)]
            lines.append("  or by hand, SGLang:")
            lines += [f"    {c}" for c in sglang_commands(replica, model, chute.name)]
            break
    if plan.unused:
        spare = ", ".join(f"{p.node}:{','.join(map(str, p.gpus))}" for p in plan.unused)
        lines.append(f"\nunused GPUs: {spare}")
    return "\n".join(lines)
