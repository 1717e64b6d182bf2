"""Shared fixtures. Engines are expensive: one vLLM engine serves the whole session."""

from __future__ import annotations

import shutil

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_gpu = shutil.which("nvidia-smi") is not None
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (nvidia-smi not found)")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
