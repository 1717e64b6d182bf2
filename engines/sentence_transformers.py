"""The sentence-transformers engine: chutebox's own embedding worker (`engines.st_server`)."""

from __future__ import annotations

from engines.worker import WorkerBackend
from runtime.backend import EMBEDDINGS, LaunchRequest


class SentenceTransformersBackend(WorkerBackend):
    """Embeddings with sentence-transformers (torch or ONNX Runtime), dynamically batched."""

    name = "sentence-transformers"
    server_module = "engines.st_server"
    capabilities = frozenset({EMBEDDINGS})
    default_concurrency = 32
    module = "sentence_transformers"
    install_hint = "pip install 'chutebox[embeddings]'"

    def extra_args(self, request: LaunchRequest) -> tuple[str, ...]:
        return ("--cache-dir", request.cache_dir) if request.cache_dir else ()
