"""The Chutes GPU table (short id → memory) and NVML names mapped onto it."""

from __future__ import annotations

import re

# Short ids and memory in GB, as the Chutes node selector knows them.
GPU_MEMORY_GB: dict[str, int] = {
    "3090": 24, "4090": 24, "5090": 32, "a4000": 16, "a5000": 24, "a6000": 48, "l4": 24,
    "a10": 24, "a40": 48, "l40": 48, "l40s": 48, "a100_40gb": 40, "a100": 80, "a100_sxm": 80,
    "h100": 80, "h100_nvl": 96, "h100_sxm": 80, "h800": 80, "h20": 96, "h200": 140,
    "mi300x": 192, "b200": 192,
}  # fmt: skip

# GPU classes whose multi-GPU replicas get NCCL P2P/IB re-enabled, as the Chutes templates do.
NVLINK_CLASS = ("h100", "h200", "h800", "a100", "l40s", "b200", "5090", "rtx6000_ada")

# NVML product names → short id; first match wins, so specific patterns come first.
_NAME_PATTERNS: list[tuple[str, str]] = [
    (r"h100.*nvl", "h100_nvl"), (r"h100.*(sxm|hbm3)", "h100_sxm"), (r"h100", "h100"),
    (r"h200", "h200"), (r"h800", "h800"), (r"h20\b", "h20"), (r"b200", "b200"),
    (r"a100.*40\s*gb|a100-(sxm4|pcie)-40gb", "a100_40gb"), (r"a100-sxm", "a100_sxm"),
    (r"a100", "a100"), (r"l40s", "l40s"), (r"l40\b", "l40"), (r"\bl4\b", "l4"),
    (r"a40\b", "a40"), (r"a10\b|a10g", "a10"), (r"rtx 6000 ada", "rtx6000_ada"),
    (r"a6000", "a6000"), (r"a5000", "a5000"), (r"a4000", "a4000"), (r"5090", "5090"),
    (r"4090", "4090"), (r"3090", "3090"), (r"mi300x", "mi300x"),
]  # fmt: skip


def short_id(name: str) -> str:
    """`NVIDIA H100 80GB HBM3` → `h100_sxm`; unknown names become a slug of themselves."""
    lowered = name.lower()
    for pattern, gpu_id in _NAME_PATTERNS:
        if re.search(pattern, lowered):
            return gpu_id
    return re.sub(r"[^a-z0-9]+", "_", lowered.replace("nvidia", "")).strip("_")


def nvlink_class(gpu_id: str) -> bool:
    return gpu_id.startswith(NVLINK_CLASS)
