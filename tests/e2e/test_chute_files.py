"""Chute files written for the Chutes SDK, served unchanged: vLLM, embedding and diffusion
templates run for real on tiny local models, without the SDK and with it."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from tests.e2e.conftest import API_KEY
from tests.support.servers import ROOT, Served, chutebox_serve, free_port
from tests.support.tiny_diffusion import build_tiny_pipeline

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]
SHA = "0123456789abcdef0123456789abcdef01234567"
SDK_PYTHON = ROOT / ".venv-chutes" / "bin" / "python"


def write_chute_files(folder: Path, tiny_model: Path, pipeline: Path) -> None:
    (folder / "llm_chute.py").write_text(f"""
from chutes.chute import NodeSelector
from chutes.chute.template.vllm import build_vllm_chute

chute = build_vllm_chute(
    username="me", model_name={str(tiny_model)!r}, revision="{SHA}",
    node_selector=NodeSelector(gpu_count=1, min_vram_gb_per_gpu=16),
    engine_args="--dtype bfloat16 --max-model-len 512 --enforce-eager", concurrency=4,
)
""")
    (folder / "embed_chute.py").write_text(f"""
from chutes.chute import NodeSelector
from chutes.chute.template.embedding import build_embedding_chute

chute = build_embedding_chute(
    username="me", model_name={str(tiny_model)!r}, revision="{SHA}",
    node_selector=NodeSelector(gpu_count=1), engine_args="--dtype float32 --enforce-eager",
    pooling_type="mean", max_embed_len=256,
)
""")
    (folder / "image_chute.py").write_text(f"""
from chutes.chute import NodeSelector
from chutes.chute.template.diffusion import build_diffusion_chute

chute = build_diffusion_chute(
    username="me", name="tiny-sd", model_name_or_url={str(pipeline)!r},
    node_selector=NodeSelector(gpu_count=1, min_vram_gb_per_gpu=24),
)
""")


@pytest.fixture(scope="module")
def chute_folder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chute_files")
    write_chute_files(folder, tiny_model, build_tiny_pipeline(folder / "tiny-sd"))
    return folder


@pytest.fixture(scope="module")
def gateway(chute_folder: Path) -> Iterator[Served]:
    args = ["llm_chute:chute", "image_chute:chute", "--api-key", API_KEY]
    env = {"PYTHONPATH": str(chute_folder)}
    with chutebox_serve(args, chute_folder / "log", env=env, ready_timeout=600) as served:
        yield served


def test_llm_and_diffusion_templates_serve_for_real(gateway: Served, tiny_model: Path) -> None:
    with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=API_KEY) as sdk:
        names = sorted(m.id for m in sdk.models.list().data)
        assert names == sorted([str(tiny_model), "tiny-sd"])  # the template names the chute
        reply = sdk.chat.completions.create(
            model=str(tiny_model), messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert reply.usage is not None and reply.usage.completion_tokens >= 1
    headers = {"Authorization": f"Bearer {API_KEY}"}
    image = httpx.post(gateway.base_url + "/generate", headers=headers, timeout=120,
                       json={"prompt": "x", "width": 128, "height": 128,
                             "num_inference_steps": 1, "seed": 1})  # fmt: skip
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.headers["x-chutes-conn-available"] == "2"  # the template's concurrency 3


def test_the_embedding_template_runs_vllm_pooling(chute_folder: Path, tiny_model: Path) -> None:
    # Its name equals the LLM chute's (both are the model path), so it runs on its own.
    args = ["embed_chute:chute", "--api-key", API_KEY]
    env = {"PYTHONPATH": str(chute_folder)}
    with chutebox_serve(args, chute_folder / "embed.log", env=env, ready_timeout=600) as served:
        with openai.OpenAI(base_url=served.base_url + "/v1", api_key=API_KEY) as sdk:
            vectors = sdk.embeddings.create(model=str(tiny_model), input=["a", "b"])
        assert [len(d.embedding) for d in vectors.data] == [64, 64]
        log = served.log_text()
    assert '"pooling_type": "MEAN"' in log and "--max-model-len 256" in log


@pytest.mark.skipif(not SDK_PYTHON.exists(), reason="make install creates .venv-chutes")
def test_the_real_sdk_runs_the_same_files(chute_folder: Path) -> None:
    check = subprocess.run([str(SDK_PYTHON), "-c", "import chutes.chute.template.vllm"],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stderr
    env = {**os.environ, "PYTHONPATH": str(chute_folder)}
    plan = subprocess.run(
        [str(SDK_PYTHON), "-m", "runtime.cli", "plan", "llm_chute:chute", "--gpus", "2xH100",
         "--json", "--python", sys.executable],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    replicas = json.loads(plan.stdout)["chutes"][0]["replicas"]
    assert [r["tp"] for r in replicas] == [1, 1]  # gpu_count=1 from its NodeSelector
    port = free_port()
    command = [str(SDK_PYTHON), "-m", "runtime.cli", "serve"]
    args = ["image_chute:chute", "--python", sys.executable, "--api-key", API_KEY,
            "--port", str(port)]  # fmt: skip
    with chutebox_serve(args, chute_folder / "sdk.log", env={"PYTHONPATH": str(chute_folder)},
                        command=command, port=port) as served:  # fmt: skip
        reply = httpx.post(served.base_url + "/v1/images/generations", timeout=120,
                           headers={"Authorization": f"Bearer {API_KEY}"},
                           json={"prompt": "x", "size": "128x128", "num_inference_steps": 1,
                                 "seed": 2})  # fmt: skip
    assert reply.status_code == 200, reply.text
    picture = Image.open(io.BytesIO(base64.b64decode(reply.json()["data"][0]["b64_json"])))
    assert picture.size == (128, 128)
