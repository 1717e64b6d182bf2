"""vLLM in pooling mode, as the Chutes embedding template runs it.

The pooling is chosen from the model's name as the template does (bge → CLS; e5, sentence-t5,
jina → MEAN; gte and Qwen embedding models → LAST; anything else → MEAN); a `--pooler-config` in
the chute's engine args overrides it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from engines.vllm import VLLMBackend
from runtime.backend import EMBEDDINGS, TOKENIZE, AbortCall, LaunchRequest, LaunchSpec, has_flag


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
    capabilities = frozenset({EMBEDDINGS, TOKENIZE})

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
