"""The backend contract: what to launch, how to know it is ready, what it can do, how to abort."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Device = Literal["cpu", "cuda"]

# Routes a backend can serve; the gateway answers 404 for a chute whose engine lacks one.
CHAT = "chat"
COMPLETIONS = "completions"
TOKENIZE = "tokenize"
EMBEDDINGS = "embeddings"
IMAGES = "images"


def split_args(args: str) -> list[str]:
    """A chute's engine_args string, split as a shell would (ValueError on bad quoting)."""
    return shlex.split(args)


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to build its engine's command line."""

    model_path: str
    served_name: str
    port: int
    api_key: str
    python: str
    device: Device
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


@dataclass(frozen=True)
class LaunchSpec:
    """The process to start: its argv and the environment it adds to the inherited one."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AbortCall:
    """An HTTP call that cancels a request in the engine, for engines where closing the
    connection is not enough (SGLang's `/abort_request`)."""

    path: str
    body: Mapping[str, object]


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
    # The module the engine's interpreter must be able to import, and how to install it.
    module: str
    install_hint: str
    # The request field that carries chutebox's invocation id, for engines aborted by id.
    request_id_field: str | None

    def check_args(self, args: Sequence[str]) -> None:
        """Raise `ConfigError` for engine args the runtime owns (key, port, served name…)."""

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        """Build the engine's command line and environment."""

    def accepted_fields(self, route: str) -> frozenset[str] | None:
        """Request fields the engine understands on `route`; None means anything goes."""

    def abort_call(self, request_id: str) -> AbortCall | None:
        """How to cancel a request in flight; None when closing the connection does it."""
