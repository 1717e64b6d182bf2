"""What the gateway knows of its machine: visible GPUs, usable CPUs, the inherited environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.planner.discovery import discover
from runtime.planner.inventory import Node

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class Host:
    cpu_ids: tuple[int, ...]
    environ: Mapping[str, str] = field(default_factory=dict)
    node: Node = field(default_factory=lambda: Node("local", ()))

    @property
    def gpu_count(self) -> int:
        return len(self.node.gpus)

    @classmethod
    def discover(cls, environ: Mapping[str, str]) -> Host:
        node = discover(environ) if visible_gpu_count(environ) else Node("local", ())
        return cls(
            cpu_ids=tuple(sorted(os.sched_getaffinity(0))),
            environ=dict(environ),
            node=node,
        )


def visible_gpu_count(environ: Mapping[str, str], driver_dir: Path = NVIDIA_GPUS) -> int:
    """GPUs an engine would see: CUDA_VISIBLE_DEVICES, else Chutes' CUDA_DEVICE_COUNT, else
    the NVIDIA driver's device list."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    count = environ.get("CUDA_DEVICE_COUNT", "")
    if count.isdigit():
        return int(count)
    try:
        return sum(1 for _ in driver_dir.iterdir())
    except OSError:
        return 0
