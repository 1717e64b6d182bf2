"""vLLM in pooling mode: embeddings, as the Chutes embedding template runs it, and reranking.

Embeddings: the pooling is chosen from the model's name as the template does (bge → CLS; e5,
sentence-t5, jina → MEAN; gte and Qwen embedding models → LAST; anything else → MEAN); a
`--pooler-config` in the chute's engine args overrides it.
Reranking (`vllm-rerank`): `--runner pooling` on a cross-encoder (a sequence-classification
model), whose own head scores each pair; vLLM then serves /v1/rerank and /v1/score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from engines.vllm import VLLMBackend
from runtime.fleet.backend import (
    EMBEDDINGS,
    RERANK,
    TOKENIZE,
    AbortCall,
    LaunchRequest,
    LaunchSpec,
    has_flag,
)


def pooling_for(model_name: str) -> str:
    """The Chutes template's rule, applied to the chute's name (a hub id by default)."""
    name = model_name.lower()
    if "bge" in name:
        return "CLS"
    if any(tag in name for tag in ("e5", "sentence-t5", "jina")):
        return "MEAN"
    if "gte" in name or ("qwen" in name and "embed" in name):
        return "LAST"
    return "MEAN"


class VLLMEmbeddingBackend(VLLMBackend):
    """vLLM's OpenAI server with `--runner pooling --convert embed`."""

    name = "vllm-embedding"
    # vLLM also scores pairs with an embedding model (cosine similarity): /v1/rerank, /v1/score.
    capabilities = frozenset({EMBEDDINGS, TOKENIZE, RERANK})

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        spec = super().launch(request)
        extra: list[str] = []
        args: Sequence[str] = request.engine_args
        if not has_flag(args, ("--runner",)):
            extra += ["--runner", "pooling"]
        if not has_flag(args, ("--convert",)):
            extra += ["--convert", "embed"]
        if not has_flag(args, ("--pooler-config",)):
            # The served name, not the path: cache paths hold hex digests ("…e5…").
            pooling = pooling_for(request.served_name)
            extra += ["--pooler-config", json.dumps({"pooling_type": pooling})]
        cut = len(spec.argv) - len(args)
        return LaunchSpec(argv=(*spec.argv[:cut], *extra, *spec.argv[cut:]), env=spec.env)

    def abort_call(self, request_id: str) -> AbortCall | None:
        return None


class VLLMRerankBackend(VLLMBackend):
    """vLLM's OpenAI server with `--runner pooling` on a cross-encoder."""

    name = "vllm-rerank"
    capabilities = frozenset({RERANK, TOKENIZE})

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        spec = super().launch(request)
        if has_flag(request.engine_args, ("--runner",)):
            return spec
        cut = len(spec.argv) - len(request.engine_args)
        argv = (*spec.argv[:cut], "--runner", "pooling", *spec.argv[cut:])
        return LaunchSpec(argv=argv, env=spec.env)
