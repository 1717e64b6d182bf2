"""Peers the benches measure chutebox against, each in a venv of its own (their pins must
not touch chutebox's); `make` targets create them."""

from __future__ import annotations

from pathlib import Path

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
# The vLLM project's Rust router (PyPI `vllm-router`), made by `make .venv-vllm-router/.installed`.
VLLM_ROUTER = ROOT / ".venv-vllm-router" / "bin" / "vllm-router"


def vllm_router_argv(port: int, policy: str, upstreams: list[str]) -> list[str] | None:
    """vllm-router on loopback `port` in front of `upstreams`; None when not installed."""
    if not VLLM_ROUTER.exists():
        return None
    # Its Prometheus exporter binds a fixed port unless told another: one each.
    return [str(VLLM_ROUTER), "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
            "--prometheus-port", str(free_port()), "--worker-urls", *upstreams]  # fmt: skip


# SGLang's model gateway (PyPI `smg`), made by `make .venv-smg/.installed`.
SMG = ROOT / ".venv-smg" / "bin" / "smg"


def smg_argv(port: int, policy: str, upstreams: list[str]) -> list[str] | None:
    """smg's router alone (`launch`) on loopback `port` in front of `upstreams`; None when
    not installed."""
    if not SMG.exists():
        return None
    return [str(SMG), "launch", "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
            "--prometheus-port", str(free_port()), "--worker-urls", *upstreams]  # fmt: skip
