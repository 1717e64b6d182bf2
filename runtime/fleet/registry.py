"""Engines register by import string and load lazily (uvicorn's "module:Class" idea).

The gateway never imports an engine module at import time: a backend is loaded when a chute
names it, so `runtime` stays free of `engines` (and of whatever an engine module imports).
"""

from __future__ import annotations

import importlib
from typing import cast

from runtime.fleet.backend import EngineBackend

BACKENDS: dict[str, str] = {
    "vllm": "engines.vllm:VLLMBackend",
    "vllm-embedding": "engines.vllm_embedding:VLLMEmbeddingBackend",
    "vllm-rerank": "engines.vllm_embedding:VLLMRerankBackend",
    "sglang": "engines.sglang:SGLangBackend",
    "sentence-transformers": "engines.sentence_transformers:SentenceTransformersBackend",
    "diffusers": "engines.diffusion:DiffusersBackend",
    "fake": "engines.fake:FakeBackend",
    "openai": "engines.openai_compatible:OpenAICompatibleBackend",
    "chute": "engines.cords:CordsBackend",
}


class UnknownEngineError(LookupError):
    """The chute names an engine chutebox does not have."""


def load_backend(name: str) -> EngineBackend:
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise UnknownEngineError(f"unknown engine {name!r}; known engines: {known}") from None
    module_name, _, attr = target.partition(":")
    backend_cls = getattr(importlib.import_module(module_name), attr)
    return cast(EngineBackend, backend_cls())
