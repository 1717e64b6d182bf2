"""`build_diffusion_chute`, recorded."""

from __future__ import annotations

from typing import Any

from chutes.chute.template import record


def build_diffusion_chute(
    username: str, name: str, model_name_or_url: str, node_selector: Any = None, **kwargs: Any
) -> Any:
    call = {"username": username, "name": name, "model_name_or_url": model_name_or_url,
            "node_selector": node_selector, **kwargs}  # fmt: skip
    return record("diffusion", call, "name", 3)
