"""How an engine process is set up: its device, cores and environment, the private folder
for its socket and key files, and the address it is reached at."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from runtime.errors import ConfigError
from runtime.fleet.backend import Device, LaunchRequest, LaunchSpec, flag_value, split_args
from runtime.fleet.chutes import Chute
from runtime.planner.host import Host
from runtime.planner.plan import ReplicaPlan

# As in the Chutes templates: engines never reach the hub at run time.
ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    "PYTHONUNBUFFERED": "1",
}


def engine_device(chute: Chute, host: Host) -> Device:
    if chute.settings.device != "auto":
        return chute.settings.device
    return "cuda" if host.gpu_count else "cpu"


def cpu_share(cpu_ids: tuple[int, ...], index: int, count: int) -> tuple[int, ...]:
    """Replica `index` of `count` gets its own slice of the cores (all, if too few)."""
    if count <= 1 or len(cpu_ids) < count:
        return cpu_ids
    size = len(cpu_ids) // count
    return cpu_ids[index * size : (index + 1) * size]


def engine_environment(host: Host, chute: Chute, plan: ReplicaPlan, rank: int,
                       extra: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """An engine's environment: the host's, the engine defaults, the plan's NCCL settings and
    GPUs (on the replica's node of `rank`), the backend's, then the chute's own `env`."""
    env = {**host.environ, **ENGINE_ENV}
    for name in plan.env_unset:
        env.pop(name, None)
    env.update(plan.env)
    devices = plan.devices_on(rank)
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices
    # A chute's `env` may override what the backend set (settings checked it holds no key).
    return {**env, **extra, **chute.settings.env}


def waiting_for_nodes(chute: Chute, leader: str, before: str) -> str:
    """What a multi-node replica waits for while its engine starts: every rank joining."""
    nodes = chute.settings.nodes
    ranks = ", ".join(str(r) for r in range(1, nodes))
    text = (f"waiting for node rank(s) {ranks} to join at {leader}:{chute.settings.dist_port} "
            f"(on each: chutebox serve with this config and --node-rank N "
            f"--leader-address {leader})")  # fmt: skip
    first = before.removeprefix("restarting: ").splitlines()[0] if before else ""
    return f"{text}; before: {first}" if first else text


def private_folder() -> Path:
    """A folder only this user can open (mkdtemp makes it 0700): engine sockets and key
    files live there. Under /tmp when the temp dir's path is too long for socket names."""
    folder = Path(tempfile.mkdtemp(prefix="chutebox-"))
    if len(str(folder)) > 80:
        shutil.rmtree(folder)
        folder = Path(tempfile.mkdtemp(prefix="chutebox-", dir="/tmp"))
    return folder


def address_of(request: LaunchRequest) -> str:
    if request.socket_path:
        return "unix:" + request.socket_path
    return f"http://{request.host}:{request.port}"


def write_private_files(spec: LaunchSpec) -> None:
    for path, text in spec.files.items():
        # Created readable by this user alone, before a byte of the secret is written.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)


def remove_private_files(spec: LaunchSpec, socket_path: str) -> None:
    for path in (*spec.files, *([socket_path] if socket_path else [])):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def redact(argv: tuple[str, ...], secret: str) -> list[str]:
    return ["***" if a == secret else a for a in argv]


# The ranks vLLM's --max-lora-rank takes.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapters: Mapping[str, str]) -> int:
    """The engine's --max-lora-rank for `adapters` (name → folder): the smallest vLLM takes
    at or above the largest `r` in their adapter_config.json; ConfigError naming the
    adapter at fault."""
    largest = 0
    for name, folder in adapters.items():
        config = Path(folder).expanduser() / "adapter_config.json"
        try:
            rank = json.loads(config.read_text())["r"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"adapter {name}: no LoRA adapter at {folder} ({exc})") from exc
        if not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"adapter {name}: its adapter_config.json has no rank `r`")
        largest = max(largest, rank)
    for allowed in LORA_RANKS:
        if allowed >= largest:
            return allowed
    raise ConfigError(f"adapters: rank {largest} is over vLLM's largest, {LORA_RANKS[-1]}")


MEMINFO = Path("/proc/meminfo")
# What a vLLM CPU engine takes beside its weights and KV cache: its API server, engine core
# and worker processes held 2.5–3.2 GB resident for the tests' tiny Llama on this machine
# (`ps` during the e2e suite); other engines, far less.
VLLM_PROCESS_GB = 3.0
OTHER_PROCESS_GB = 0.5
VLLM_CPU_KV_BYTES = 268435456  # the CPU KV cache engines.vllm asks for unless told


def available_memory_gb(meminfo: Path = MEMINFO) -> float:
    """The host's available memory (MemAvailable), in GB; infinite when unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1 << 20)
    except (OSError, ValueError, IndexError):
        pass
    return float("inf")


def host_memory_gb(weight_bytes: int | None, backend: str, engine_args: str) -> float:
    """Host memory a chute's engine takes on CPU: its weights, its KV cache and the
    process itself."""
    weights = (weight_bytes or 0) / (1 << 30)
    if not backend.startswith("vllm"):
        return weights + OTHER_PROCESS_GB
    kv = flag_value(split_args(engine_args), ("--kv-cache-memory-bytes",))
    kv_bytes = int(kv) if kv and kv.isdigit() else VLLM_CPU_KV_BYTES
    return weights + kv_bytes / (1 << 30) + VLLM_PROCESS_GB
