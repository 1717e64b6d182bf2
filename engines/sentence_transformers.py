"""The sentence-transformers engine: chutebox's own embedding worker (`engines.st_server`)."""

from __future__ import annotations

from engines.worker import WorkerBackend
from runtime.fleet.backend import EMBEDDINGS, RERANK, LaunchRequest


class SentenceTransformersBackend(WorkerBackend):
    """Embeddings with sentence-transformers (torch or ONNX Runtime), dynamically batched; or,
    with engine arg `--cross-encoder`, reranking with a CrossEncoder. The worker's
    /openapi.json says which of the two routes families it serves."""

    name = "sentence-transformers"
    server_module = "engines.st_server"
    capabilities = frozenset({EMBEDDINGS, RERANK})
    default_concurrency = 32
    module = "sentence_transformers"
    install_hint = "pip install 'chutebox[embeddings]'"

    def extra_args(self, request: LaunchRequest) -> tuple[str, ...]:
        return ("--cache-dir", request.cache_dir) if request.cache_dir else ()
