"""The sentence-transformers engine: chutebox's own embedding worker (`engines.st_server`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engines.base import EMBEDDINGS, AbortCall, LaunchRequest, LaunchSpec
from runtime.errors import ConfigError

OWNED_FLAGS = ("--api-key", "--served-model-name", "--host", "--port", "--model", "--device")
# The worker is chutebox code; it must import from a separate engine interpreter too.
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class SentenceTransformersBackend:
    """Embeddings with sentence-transformers (torch or ONNX Runtime), dynamically batched."""

    name = "sentence-transformers"
    capabilities = frozenset({EMBEDDINGS})
    ready_path = "/v1/models"
    health_path = "/health"
    default_concurrency = 32
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = False
    module = "sentence_transformers"
    install_hint = "pip install 'chutebox[embeddings]'"
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        for arg in args:
            name = arg.partition("=")[0]
            if name in OWNED_FLAGS:
                raise ConfigError(f"engine_args may not set {name}: chutebox sets it")

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        self.check_args(request.engine_args)
        threads = len(request.cpu_ids) or 1
        argv = (
            request.python, "-m", "engines.st_server",
            "--model", request.model_path,
            "--served-model-name", request.served_name,
            "--api-key", request.api_key,
            "--host", request.host, "--port", str(request.port),
            "--device", request.device, "--threads", str(threads),
            *(("--cache-dir", request.cache_dir) if request.cache_dir else ()),
            *request.engine_args,
        )  # fmt: skip
        return LaunchSpec(argv=argv, env={"PYTHONPATH": PACKAGE_ROOT})

    def accepted_fields(self, route: str) -> frozenset[str] | None:
        return frozenset({"truncate_prompt_tokens"}) if route == EMBEDDINGS else None

    def abort_call(self, request_id: str) -> AbortCall | None:
        return None
