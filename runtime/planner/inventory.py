"""GPU inventories: what a node has, discovered or written as text (`8xH100-80GB`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runtime.errors import ConfigError
from runtime.planner.gputable import GPU_MEMORY_GB, short_id

_SPEC = re.compile(r"^\s*(\d+)\s*[x×]\s*([A-Za-z0-9_ ]+?)(?:-(\d+)\s*GB)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Gpu:
    """One GPU as the planner sees it."""

    index: int
    gpu_id: str
    memory_gb: float
    name: str = ""
    compute_capability: str = ""


@dataclass(frozen=True)
class Node:
    """One machine's GPUs and how they are linked (`links[i][j]` e.g. "NV12", "PIX", "SYS")."""

    name: str
    gpus: tuple[Gpu, ...]
    links: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    def nvlinked(self, indices: tuple[int, ...]) -> bool | None:
        """Whether every pair of `indices` is joined by NVLink; None when links are unknown."""
        if not self.links:
            return None
        position = {g.index: i for i, g in enumerate(self.gpus)}
        pairs = [(a, b) for a in indices for b in indices if a < b]
        return all(self.links[position[a]][position[b]].startswith("NV") for a, b in pairs)


def parse_gpu_spec(spec: str, node_name: str = "node0") -> Node:
    """`8xH100-80GB`, `2x4090,1xL4` → a Node; memory from the spec, else from the GPU table."""
    gpus: list[Gpu] = []
    for part in spec.split(","):
        match = _SPEC.match(part)
        if not match:
            raise ConfigError(f"--gpus: cannot read {part.strip()!r}; write e.g. 8xH100-80GB")
        count, name, memory = int(match.group(1)), match.group(2).strip(), match.group(3)
        gpu_id = _table_id(name, int(memory) if memory else None)
        if memory is None and gpu_id not in GPU_MEMORY_GB:
            raise ConfigError(f"--gpus: unknown GPU {name!r}; add its memory, e.g. {name}-48GB")
        memory_gb = float(memory) if memory else float(GPU_MEMORY_GB[gpu_id])
        gpus += [Gpu(len(gpus) + i, gpu_id, memory_gb, name) for i in range(count)]
    if not gpus:
        raise ConfigError("--gpus: no GPUs given")
    return Node(node_name, tuple(gpus))


def _table_id(name: str, memory: int | None) -> str:
    lowered = name.lower().replace(" ", "_")
    if lowered in GPU_MEMORY_GB:
        gpu_id = lowered
    else:
        gpu_id = short_id(name)
    if gpu_id.startswith("a100") and memory == 40:
        return "a100_40gb"
    return gpu_id
