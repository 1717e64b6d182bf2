"""The diffusers engine: chutebox's own image worker (`engines.diffusion_server`)."""

from __future__ import annotations

from engines.worker import WorkerBackend
from runtime.fleet.backend import IMAGES


class DiffusersBackend(WorkerBackend):
    """Text-to-image with diffusers: a pipeline folder, a hub id, or one checkpoint file."""

    name = "diffusers"
    server_module = "engines.diffusion_server"
    capabilities = frozenset({IMAGES})
    default_concurrency = 3
    single_file_suffixes = frozenset({".safetensors", ".ckpt"})
    module = "diffusers"
    install_hint = "pip install 'chutebox[images]'"
