"""Launch commands for a replica spread over several nodes: vLLM on Ray, SGLang's own flags.

chutebox does not build a cluster layer; it prints the commands the engines document, with the
plan's sizes filled in. Node names stand for the hosts' addresses.
"""

from __future__ import annotations

import shlex

from runtime.planner.plan import ReplicaPlan

RAY_PORT = 6379
SGLANG_PORT = 5000


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
