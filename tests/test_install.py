"""chutebox as users install it: the wheel, not `-e`, in a clean environment, run from
elsewhere than the checkout (so nothing of the source tree can stand in for the package)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_wheel_installs_and_every_command_runs(tmp_path: Path) -> None:
    # Built from a copy of the sources: setuptools builds in the tree it is given and would
    # leave build/ in the checkout, whose stale files a later wheel could pick up.
    source = tmp_path / "source"
    ignored = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "results")
    shutil.copytree(ROOT, source, ignore=ignored)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("chutebox-*.whl")
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python, chutebox = env_dir / "bin" / "python", env_dir / "bin" / "chutebox"
    run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path, timeout=900)
    where = run([str(python), "-c", "import runtime; print(runtime.__file__)"], cwd=tmp_path)
    assert str(env_dir) in where.stdout  # the installed copy, not the checkout

    assert "serve" in run([str(chutebox), "--help"], cwd=tmp_path).stdout
    assert "--base-url" in run([str(chutebox), "conformance", "--help"], cwd=tmp_path).stdout
    model = tmp_path / "llama"
    model.mkdir()
    config = {"model_type": "llama", "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "hidden_size": 4096,
              "max_position_embeddings": 8192}  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    plan = run([str(chutebox), "plan", "--model", str(model), "--params", "8B", "--gpus",
                "2xH100-80GB", "--json"], cwd=tmp_path)  # fmt: skip
    assert len(json.loads(plan.stdout)["chutes"][0]["replicas"]) == 2
    dockerfile = run([str(chutebox), "image", "render", "vllm"], cwd=tmp_path).stdout
    assert dockerfile.startswith("FROM ") and 'ENTRYPOINT ["chutebox", "serve"]' in dockerfile
    # The conformance kit runs (against nothing listening: it must fail its checks, not crash).
    kit = subprocess.run([str(chutebox), "conformance", "--base-url", "http://127.0.0.1:9",
                          "--only", "models", "--timeout", "2"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert kit.returncode == 1 and "Traceback" not in kit.stderr, kit.stdout + kit.stderr
    # Data files ship in the wheel: the default chute's chat template and the status page.
    template = run(
        [
            str(python),
            "-c",
            "from runtime.config.defaults import TOOLS_TEMPLATE as t; "
            "from runtime.api.handlers.ui import FOLDER as u; "
            "print(t.is_file() and (u / 'app.js').is_file(), t)",
        ],
        cwd=tmp_path,
    ).stdout
    assert template.startswith("True") and str(env_dir) in template
