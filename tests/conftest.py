"""Shared fixtures. Engines are expensive: one vLLM engine serves the whole session."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.servers import Served

# Enough of a gateway's log to show an engine's traceback, which lands there line by line.
LOG_TAIL_LINES = 80


def _docker_engine() -> bool:
    tool = shutil.which("docker") or shutil.which("podman")
    if tool is None:
        return False
    return subprocess.run([tool, "info"], capture_output=True, timeout=30).returncode == 0


# A process that keeps one core busy until it is stopped (or for an hour at most).
BUSY_LOOP = "import time\nend = time.monotonic() + 3600\nwhile time.monotonic() < end: pass"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--busy-cores", type=int, default=0, metavar="N",
        help="keep N cores busy with spinning processes for the whole session: the tests must "
        "hold on a loaded machine (e.g. pytest tests/e2e/test_faults.py --busy-cores 2)",
    )  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def busy_cores(request: pytest.FixtureRequest) -> Iterator[None]:
    count = int(request.config.getoption("--busy-cores"))
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that used a running gateway shows the end of that gateway's log.

    The engines' output is in it; without it a 500 from an engine in CI says nothing of why.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, Served) and value.log.exists():
            lines = value.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"log of the gateway in fixture {name!r}", "\n".join(lines)))
