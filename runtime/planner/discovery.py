"""Reading the host's GPUs: NVML (nvidia-ml-py, imported lazily), else `nvidia-smi`.

The parsers are pure functions over the tools' text so tests can feed them recorded outputs.
`CUDA_VISIBLE_DEVICES` (indices or UUIDs) and Chutes' `CUDA_DEVICE_COUNT` narrow what is seen.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from runtime.planner.gputable import short_id
from runtime.planner.inventory import Gpu, Node

QUERY = ["nvidia-smi", "--query-gpu=index,name,memory.total,compute_cap,uuid",
         "--format=csv,noheader,nounits"]  # fmt: skip
TOPOLOGY = ["nvidia-smi", "topo", "-m"]
Runner = Callable[[Sequence[str]], str]


def parse_query(text: str) -> list[tuple[Gpu, str]]:
    """`nvidia-smi --query-gpu=index,name,memory.total,compute_cap,uuid` CSV → (GPU, uuid)."""
    gpus = []
    for line in text.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        index, name, memory_mib, capability, uuid = fields[:5]
        memory_gb = round(float(memory_mib) / 1024, 1)
        gpus.append((Gpu(int(index), short_id(name), memory_gb, name, capability), uuid))
    return gpus


def parse_topology(text: str, count: int) -> tuple[tuple[str, ...], ...]:
    """The GPU×GPU block of `nvidia-smi topo -m` ("X", "NV12", "PIX", "SYS", …)."""
    rows: list[tuple[str, ...]] = []
    header: list[str] = []
    for line in text.splitlines():
        cells = line.split()
        if not header and cells and cells[0].startswith("GPU"):
            header = [c for c in cells if re.fullmatch(r"GPU\d+", c)]
            continue
        if header and cells and re.fullmatch(r"GPU\d+", cells[0]):
            rows.append(tuple(cells[1 : 1 + len(header)]))
    return tuple(rows[:count]) if len(rows) >= count else ()


def visible(gpus: list[tuple[Gpu, str]], environ: Mapping[str, str]) -> list[Gpu]:
    """Apply CUDA_VISIBLE_DEVICES, then CUDA_DEVICE_COUNT; renumber as CUDA will."""
    chosen = gpus
    mask = environ.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        wanted = [m.strip() for m in mask.split(",") if m.strip() and m.strip() != "-1"]
        by_key = {str(g.index): (g, u) for g, u in gpus} | {u: (g, u) for g, u in gpus}
        chosen = [by_key[w] for w in wanted if w in by_key]
    count = environ.get("CUDA_DEVICE_COUNT", "")
    if count.isdigit():
        chosen = chosen[: int(count)]
    return [replace(g, index=i) for i, (g, _) in enumerate(chosen)]


def _run(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True, timeout=20).stdout


def from_nvml() -> list[tuple[Gpu, str]] | None:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 1024**3
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            gpu = Gpu(index, short_id(name), round(memory, 1), name, f"{major}.{minor}")
            gpus.append((gpu, uuid))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def discover(environ: Mapping[str, str], run: Runner = _run) -> Node:
    """The local node's visible GPUs (empty when there is no NVIDIA driver)."""
    found = from_nvml()
    if found is None:
        try:
            found = parse_query(run(QUERY))
        except (OSError, subprocess.SubprocessError):
            return Node("local", ())
    gpus = visible(found, environ)
    links: tuple[tuple[str, ...], ...] = ()
    if len(gpus) > 1 and len(gpus) == len(found):
        try:
            links = parse_topology(run(TOPOLOGY), len(gpus))
        except (OSError, subprocess.SubprocessError):
            links = ()
    return Node("local", tuple(gpus), links)
