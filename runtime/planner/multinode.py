"""Launch commands for a replica spread over several nodes: chutebox's own (one per node,
which starts that node's ranks with the engine's multi-node flags), and for reference the
engines' documented ones: vLLM on Ray, SGLang's flags.

chutebox does not build a cluster layer: on each node it runs the engine's own multi-node
launch. Node names stand for the hosts' addresses.
"""

from __future__ import annotations

import shlex

from runtime.planner.plan import ReplicaPlan

RAY_PORT = 6379
SGLANG_PORT = 5000


def chutebox_commands(replica: ReplicaPlan, config: str) -> list[str]:
    """`chutebox serve` on every node of the replica; rank 0 also runs the gateway."""
    head = replica.placements[0].node
    return [f"[{p.node}] chutebox serve --config {shlex.quote(config)} --node-rank {rank} "
            f"--leader-address {head}" for rank, p in enumerate(replica.placements)]  # fmt: skip


def vllm_ray_commands(replica: ReplicaPlan, model: str, served_name: str) -> list[str]:
    head = replica.placements[0].node
    lines = []
    for rank, placement in enumerate(replica.placements):
        devices = ",".join(map(str, placement.gpus))
        start = (f"ray start --head --port={RAY_PORT}" if rank == 0
                 else f"ray start --address={head}:{RAY_PORT}")  # fmt: skip
        lines.append(f"[{placement.node}] CUDA_VISIBLE_DEVICES={devices} {start}")
    serve = (
        f"vllm serve {shlex.quote(model)} --served-model-name {shlex.quote(served_name)} "
        f"--tensor-parallel-size {replica.tp} --pipeline-parallel-size {replica.pp} "
        "--distributed-executor-backend ray"
    )
    lines.append(f"[{head}] {serve}")
    return lines


def sglang_commands(replica: ReplicaPlan, model: str, served_name: str) -> list[str]:
    head = replica.placements[0].node
    nodes = len(replica.placements)
    lines = []
    for rank, placement in enumerate(replica.placements):
        devices = ",".join(map(str, placement.gpus))
        lines.append(
            f"[{placement.node}] CUDA_VISIBLE_DEVICES={devices} python -m sglang.launch_server "
            f"--model-path {shlex.quote(model)} --served-model-name {shlex.quote(served_name)} "
            f"--tp-size {replica.tp} --pp-size {replica.pp} --nnodes {nodes} "
            f"--node-rank {rank} --dist-init-addr {head}:{SGLANG_PORT}"
        )
    return lines
