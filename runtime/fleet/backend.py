"""The backend contract: what to launch, how to know it is ready, what it can do, how to abort.

The gateway (`runtime`) and the engine backends (`engines`) meet here. This module imports
nothing of either: `engines` implement the contract, and `runtime` loads them by import string
(`runtime.fleet.registry`), so neither package imports the other at module level in both
directions.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

Device = Literal["cpu", "cuda"]

# Routes a backend can serve; the gateway answers 400 for a chute whose engine lacks one.
CHAT = "chat"
COMPLETIONS = "completions"
TOKENIZE = "tokenize"
EMBEDDINGS = "embeddings"
IMAGES = "images"
RESPONSES = "responses"  # OpenAI's Responses API
MESSAGES = "messages"  # Anthropic's Messages API
RERANK = "rerank"  # cross-encoder scoring: /v1/rerank and /v1/score
CORDS = "cords"  # a custom chute's own functions (`@chute.cord`), at their own paths

# The folder that holds chutebox's packages: the worker engines run with it on PYTHONPATH,
# so that an engine interpreter other than chutebox's own can import them.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

# The variable chutebox's own workers (and the fake engine) read their per-boot key from.
ENGINE_KEY_ENV = "CHUTEBOX_ENGINE_KEY"
# Variables that carry an engine's key: chutebox sets them, a chute's `env` may not.
KEY_VARIABLES = frozenset({ENGINE_KEY_ENV, "VLLM_API_KEY"})


def split_args(args: str) -> list[str]:
    """A chute's engine_args string, split as a shell would (ValueError on bad quoting)."""
    return shlex.split(args)


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to build its engine's command line.

    The engine listens on `socket_path` (a Unix socket in `private_dir`) when the backend
    can and the supervisor chose one, else on `host:port`. `private_dir` is a folder only
    chutebox's user can open: the place for sockets and for files that carry the key.
    """

    model_path: str
    served_name: str
    api_key: str
    python: str
    device: Device
    port: int = 0
    socket_path: str = ""
    private_dir: str = ""
    engine_args: tuple[str, ...] = ()
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    cpu_ids: tuple[int, ...] = ()
    # Pin the engine's threads to `cpu_ids` (set when CPU replicas share the machine).
    pin_cpus: bool = False
    # The Chutes templates always pass --disable-custom-all-reduce; chutebox does too, for
    # parity, unless a chute asks for vLLM's custom all-reduce kernels.
    custom_all_reduce: bool = False
    host: str = "127.0.0.1"
    cache_dir: str = ""
    # Where the engine may publish its KV-cache events for the prefix router (a ZeroMQ
    # endpoint in `private_dir`); empty when the chute does not route by prefix.
    kv_events: str = ""
    # A replica spanning nodes: how many, this node's rank (0 serves the API), and where the
    # ranks meet (the leader node's address and port).
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = ""
    master_port: int = 0
    # The OTLP collector the gateway traces to (empty: none), and how to reach it: engines
    # that trace send their spans there too.
    otlp_endpoint: str = ""
    otlp_protocol: str = "grpc"
    # The chute loads on demand: an engine that can sleep (free its device memory and wake
    # in seconds) is started able to.
    on_demand: bool = False
    # LoRA adapters loaded at run time: how many one engine holds, and the largest rank
    # (0: none).
    lora_slots: int = 0
    lora_rank: int = 0


@dataclass(frozen=True)
class LaunchSpec:
    """The process to start: its argv, the environment it adds to the inherited one, and
    files it reads at startup (path → text), written readable by chutebox's user alone
    before the start and removed after the engine stops. Keys go in `env` or `files`,
    never in `argv`: any local user can read a process's arguments."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    # The endpoint the engine publishes KV-cache events on, when it was asked to and will.
    kv_events: str = ""
    # The engine serves vLLM's sleep routes on its private link (`POST /sleep?level=1|2`,
    # `POST /wake_up`): an on-demand chute sleeps instead of stopping.
    sleep_mode: bool = False


@dataclass(frozen=True)
class AbortCall:
    """An HTTP call that cancels a request in the engine, for engines where closing the
    connection is not enough (SGLang's `/abort_request`)."""

    path: str
    body: Mapping[str, object]


@dataclass(frozen=True)
class ParallelSizes:
    """The parallel sizes a chute's engine args ask for; None where they say nothing."""

    tensor: int | None = None
    pipeline: int | None = None
    data: int | None = None


class EngineBackend(Protocol):
    """One engine family. Instances are stateless; one serves every chute of its engine."""

    name: str
    capabilities: frozenset[str]
    ready_path: str
    health_path: str
    # Chutes' template defaults: 32 for LLM and embedding chutes, 3 for diffusion.
    default_concurrency: int
    # Single-file checkpoints the engine loads as they are (a .gguf is converted for any engine).
    single_file_suffixes: frozenset[str]
    # Whether one engine can split a model over several GPUs (tensor/pipeline parallel).
    multi_gpu: bool
    # Whether one engine can span nodes (`LaunchRequest.nodes`), by its own multi-node launch.
    multi_node: bool
    # Whether the engine can listen on a Unix socket (then only chutebox's user can reach it).
    unix_socket: bool
    # The module the engine's interpreter must be able to import, and how to install it; empty
    # for a backend that starts nothing (its chutes name a `url`).
    module: str
    install_hint: str
    # The request field that carries chutebox's invocation id, for engines aborted by id.
    request_id_field: str | None

    def check_args(self, args: Sequence[str]) -> None:
        """Raise `ConfigError` for engine args the runtime owns (key, port, served name…)."""

    def parallel_sizes(self, args: Sequence[str]) -> ParallelSizes:
        """The tensor/pipeline/data parallel sizes `args` set, in this engine's own flags."""

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        """Build the engine's command line, environment and startup files."""

    def abort_call(self, request_id: str) -> AbortCall | None:
        """How to cancel a request in flight; None when closing the connection does it."""


def flag_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The value of the last of `names` in `args` (`--flag value` or `--flag=value`)."""
    found = None
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in names:
            found = value if eq else (args[i + 1] if i + 1 < len(args) else "")
    return found


def has_flag(args: Sequence[str], names: Sequence[str]) -> bool:
    return any(arg.partition("=")[0] in names for arg in args)


def int_flag(args: Sequence[str], names: Sequence[str]) -> int | None:
    """An integer flag's value; ValueError naming the flag when it is not a positive integer."""
    value = flag_value(args, names)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{names[0]} takes a positive integer, got {value!r}")
    return int(value)
