"""Peers the benches measure chutebox against, each in a venv of its own (their pins must
not touch chutebox's); `make` targets create them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The vLLM project's Rust router (PyPI `vllm-router`), made by `make .venv-vllm-router/.installed`.
VLLM_ROUTER = ROOT / ".venv-vllm-router" / "bin" / "vllm-router"


def vllm_router_binary() -> Path | None:
    return VLLM_ROUTER if VLLM_ROUTER.exists() else None
