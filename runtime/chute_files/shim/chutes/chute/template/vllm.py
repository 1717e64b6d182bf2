"""`build_vllm_chute`, recorded."""

from __future__ import annotations

from typing import Any

from chutes.chute.template import record


def build_vllm_chute(
    username: str, model_name: str, node_selector: Any = None, **kwargs: Any
) -> Any:
    call = {
        "username": username,
        "model_name": model_name,
        "node_selector": node_selector,
        **kwargs,
    }
    return record("vllm", call, "model_name", 32)
