"""Chutes' NodeSelector: exactly its five fields, checked as the SDK does not."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.errors import ConfigError
from runtime.planner.gputable import GPU_MEMORY_GB

FIELDS = ("gpu_count", "min_vram_gb_per_gpu", "max_hourly_price_per_gpu", "include", "exclude")
# Misspellings seen in the wild (the SDK drops them silently).
_HINTS = {"num_gpus": "gpu_count", "gpus": "gpu_count", "min_vram": "min_vram_gb_per_gpu",
          "min_vram_gb": "min_vram_gb_per_gpu", "vram": "min_vram_gb_per_gpu"}  # fmt: skip


@dataclass(frozen=True)
class NodeSelector:
    """Which GPUs a chute's replica may use, and how many."""

    gpu_count: int | None = None
    min_vram_gb_per_gpu: float | None = None
    max_hourly_price_per_gpu: float | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> NodeSelector:
        data = dict(data or {})
        for name in data:
            if name not in FIELDS:
                guess = _HINTS.get(name) or next(
                    iter(difflib.get_close_matches(name, FIELDS)), None
                )
                hint = f"; did you mean {guess!r}?" if guess else ""
                raise ConfigError(
                    f"node_selector: unknown field {name!r}{hint} "
                    f"(NodeSelector has exactly: {', '.join(FIELDS)})"
                )
        selector = cls(
            gpu_count=_number(data, "gpu_count", 1, 8, int),
            min_vram_gb_per_gpu=_number(data, "min_vram_gb_per_gpu", 16, 140, float),
            max_hourly_price_per_gpu=_number(data, "max_hourly_price_per_gpu", 0, None, float),
            include=_ids(data, "include"),
            exclude=_ids(data, "exclude"),
        )
        return selector

    def allows(self, gpu_id: str, memory_gb: float) -> bool:
        if self.include and gpu_id not in self.include:
            return False
        if gpu_id in self.exclude:
            return False
        return self.min_vram_gb_per_gpu is None or memory_gb >= self.min_vram_gb_per_gpu


def _number(data: Mapping[str, Any], name: str, low: float, high: float | None, kind: type) -> Any:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"node_selector.{name}: must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"node_selector.{name}: must be {bound}, got {value}")
    return kind(value)


def _ids(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name) or []
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"node_selector.{name}: must be a list of GPU ids such as ['h100']")
    for gpu_id in value:
        if gpu_id not in GPU_MEMORY_GB:
            raise ConfigError(
                f"node_selector.{name}: unknown GPU id {gpu_id!r}; known: "
                + ", ".join(GPU_MEMORY_GB)
            )
    return tuple(value)
