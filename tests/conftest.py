"""Shared fixtures. Engines are expensive: one vLLM engine serves the whole session."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _docker_engine() -> bool:
    tool = shutil.which("docker") or shutil.which("podman")
    if tool is None:
        return False
    return subprocess.run([tool, "info"], capture_output=True, timeout=30).returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_gpu = shutil.which("nvidia-smi") is not None
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (nvidia-smi not found)")
    skip_docker = pytest.mark.skip(reason="needs a running docker or podman engine")
    docker = None
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "docker" in item.keywords:
            docker = _docker_engine() if docker is None else docker
            if not docker:
                item.add_marker(skip_docker)
