"""Standard recipes, Dockerfile.cuda, hadolint, and the `chutebox image` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from images.recipes import CUDA_BASE, RECIPES, render_cuda

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def hadolint(dockerfile: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HADOLINT, "--config", str(ROOT / ".hadolint.yaml"), "-"],
                          input=dockerfile, capture_output=True, text=True)  # fmt: skip


def chutebox(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_passes_hadolint(name: str) -> None:
    dockerfile = RECIPES[name]().render()
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dockerfile.splitlines()
    assert lines[-1] == 'ENTRYPOINT ["chutebox", "serve"]'
    assert "USER 1000" in lines and any(line.startswith("HEALTHCHECK") for line in lines)
    assert any("/ready" in line for line in lines)


def test_hadolint_does_fail_on_a_bad_dockerfile() -> None:
    assert hadolint("FROM python\nRUN cd /tmp && pip install x\n").returncode != 0


def test_dockerfile_cuda_is_the_rendered_recipe() -> None:
    assert (ROOT / "Dockerfile.cuda").read_text() == render_cuda(), (
        "Dockerfile.cuda is stale: run `chutebox image render cuda > Dockerfile.cuda`"
    )
    assert hadolint(render_cuda()).returncode == 0
    for target in ("vllm", "sglang", "diffusion"):
        assert f" AS {target}\n" in render_cuda()


def test_render_a_recipe_and_a_users_own_image(tmp_path: Path) -> None:
    assert chutebox("image", "render", "vllm").stdout == RECIPES["vllm"]().render()
    (tmp_path / "myimage.py").write_text(
        "from images.image import Image\n"
        "image = Image('me', 'tool', '2').from_base('debian:bookworm-slim')"
        ".apt_install(['curl']).with_entrypoint(['curl'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = chutebox("image", "render", "myimage:image", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("FROM debian:bookworm-slim\n")
    assert chutebox("image", "render", "nope").returncode == 2
    assert "not an images.Image" in chutebox("image", "render", "os:sep").stderr


def test_build_without_an_engine_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    result = chutebox("image", "build", "cpu", env=env)
    assert result.returncode == 3
    assert "neither docker nor podman" in result.stderr and "docker build" in result.stderr


@pytest.mark.docker
def test_build_a_small_image(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(
        "from images.image import Image\n"
        "image = Image('chutebox', 'buildtest', '1').from_base('debian:bookworm-slim')"
        ".with_entrypoint(['true'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = chutebox("image", "build", "tiny:image", "--context", str(tmp_path), cwd=tmp_path,
                      env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr


FAKE_TOOLS = {
    # What an Ubuntu 24.04 base answers (its `ubuntu` account is uid 1000), or a base without.
    "getent": 'echo "getent $*" >> "$LOG"; [ -n "$HAS_1000" ] || exit 2\n'
    'echo "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash"',
    "useradd": 'echo "useradd $*" >> "$LOG"\n'
    'if [ -n "$HAS_1000" ]; then echo "useradd: UID 1000 is not unique" >&2; exit 4; fi',
    "mkdir": 'echo "mkdir $*" >> "$LOG"',
    "chown": 'echo "chown $*" >> "$LOG"',
}


@pytest.mark.parametrize("base_has_uid_1000", [True, False], ids=["ubuntu-24.04", "no-uid-1000"])
def test_the_user_step_works_whether_or_not_the_base_has_uid_1000(
    tmp_path: Path, base_has_uid_1000: bool
) -> None:
    assert CUDA_BASE.endswith("ubuntu24.04")  # the base whose `ubuntu` user broke useradd
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, body in FAKE_TOOLS.items():
        (tools / name).write_text("#!/bin/sh\n" + body + "\n")
        (tools / name).chmod(0o755)
    steps = [line.removeprefix("RUN ") for line in render_cuda().splitlines()
             if line.startswith("RUN ") and "useradd" in line]  # fmt: skip
    assert len(steps) == 3
    log = tmp_path / "log"
    env = {"PATH": f"{tools}:/bin:/usr/bin", "LOG": str(log),
           "HAS_1000": "1" if base_has_uid_1000 else ""}  # fmt: skip
    for step in steps:
        result = subprocess.run(["/bin/sh", "-c", step], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert ("useradd" in calls) is not base_has_uid_1000
    assert "chown 1000 /data" in calls
