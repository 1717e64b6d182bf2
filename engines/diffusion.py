"""The diffusers engine: chutebox's own image worker (`engines.diffusion_server`)."""

from __future__ import annotations

from collections.abc import Sequence

from engines.base import IMAGES, AbortCall, LaunchRequest, LaunchSpec
from engines.sentence_transformers import PACKAGE_ROOT
from runtime.errors import ConfigError

OWNED_FLAGS = ("--api-key", "--served-model-name", "--host", "--port", "--model", "--device")


class DiffusersBackend:
    """Text-to-image with diffusers: a pipeline folder, a hub id, or one checkpoint file."""

    name = "diffusers"
    capabilities = frozenset({IMAGES})
    ready_path = "/v1/models"
    health_path = "/health"
    default_concurrency = 3
    single_file_suffixes = frozenset({".safetensors", ".ckpt"})
    multi_gpu = False
    module = "diffusers"
    install_hint = "pip install 'chutebox[images]'"
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        for arg in args:
            name = arg.partition("=")[0]
            if name in OWNED_FLAGS:
                raise ConfigError(f"engine_args may not set {name}: chutebox sets it")

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        self.check_args(request.engine_args)
        argv = (
            request.python, "-m", "engines.diffusion_server",
            "--model", request.model_path,
            "--served-model-name", request.served_name,
            "--api-key", request.api_key,
            "--host", request.host, "--port", str(request.port),
            "--device", request.device, "--threads", str(len(request.cpu_ids) or 1),
            *request.engine_args,
        )  # fmt: skip
        return LaunchSpec(argv=argv, env={"PYTHONPATH": PACKAGE_ROOT})

    def accepted_fields(self, route: str) -> frozenset[str] | None:
        return frozenset()  # the request schemas are closed, as Chutes' gateway is

    def abort_call(self, request_id: str) -> AbortCall | None:
        return None
