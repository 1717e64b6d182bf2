"""Chute files built with the SDK's templates, loaded through chutebox's SDK stand-in.

(The real SDK is not installed in this environment; tests/e2e/test_chute_files.py runs the same
files with it, where `make install` provides it.)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from runtime.chute_files.loader import load_chute_file, sdk_installed
from runtime.config.settings import load_settings
from runtime.errors import ConfigError
from runtime.fleet.backend import split_args

SHA = "0123456789abcdef0123456789abcdef01234567"


def chute_file(tmp_path: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"chute_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    return f"{name}:chute"


VLLM = f"""
from chutes.chute import NodeSelector
from chutes.chute.template.vllm import build_vllm_chute

chute = build_vllm_chute(
    username="me", model_name="org/tiny", revision="{SHA}",
    node_selector=NodeSelector(gpu_count=2, min_vram_gb_per_gpu=24),
    engine_args="--max-model-len 4096", concurrency=8,
)
"""


@pytest.mark.skipif(sdk_installed(), reason="checks the stand-in; the SDK is installed here")
def test_vllm_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_chute_file(chute_file(tmp_path, VLLM, monkeypatch))
    assert settings == {
        "engine": "vllm", "name": "org/tiny", "model": "org/tiny", "revision": SHA,
        "engine_args": "--max-model-len 4096", "concurrency": 8,
        "node_selector": {"gpu_count": 2, "min_vram_gb_per_gpu": 24},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f"""
from chutes.chute.template.sglang import build_sglang_chute
chute = build_sglang_chute("me", "org/tiny", revision="{SHA}")
""", {"engine": "sglang", "name": "org/tiny"}),
        (f"""
from chutes.chute.template.embedding import build_embedding_chute
chute = build_embedding_chute(username="me", model_name="BAAI/bge-small", revision="{SHA}",
                              pooling_type="cls", max_embed_len=512)
""", {"engine": "vllm-embedding",
      "args": ["--pooler-config", '{"pooling_type": "CLS"}', "--max-model-len", "512"]}),
        ("""
from chutes.chute.template.diffusion import build_diffusion_chute
chute = build_diffusion_chute(username="me", name="sd", model_name_or_url="/models/sd")
""", {"engine": "diffusers", "name": "sd", "model": "/models/sd"}),
    ],
)  # fmt: skip
def test_other_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, expected: dict[str, Any]
) -> None:
    settings = load_chute_file(chute_file(tmp_path, body, monkeypatch))
    settings["args"] = split_args(settings.get("engine_args", ""))
    assert {k: settings[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"""
from chutes.chute import NodeSelector
from chutes.chute.template.vllm import build_vllm_chute
chute = build_vllm_chute("me", "org/m", NodeSelector(num_gpus=2), revision="{SHA}")
""", "num_gpus"),
        (f"""
from chutes.chute.template.vllm import build_vllm_chute
chute = build_vllm_chute("me", "org/m", revision="{SHA}", engine_args="--api-key x")
""", "may not contain --api-key"),
        ("""
from chutes.chute.template.vllm import build_vllm_chute
chute = build_vllm_chute("me", "org/m")
""", "revision"),
        ("""
from chutes.chute import Chute
chute = Chute(username="me", name="custom", image="me/img:1")
@chute.cord(public_api_path="/hello")
async def hello(self):
    return "hi"
""", "lacks the Chutes SDK: pip install chutes there"),
    ],
)  # fmt: skip
def test_wrong_arguments_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_chute_file(chute_file(tmp_path, body, monkeypatch))


def test_targets_must_be_module_attr() -> None:
    with pytest.raises(ConfigError, match="module:attr"):
        load_chute_file("just_a_module")


def test_chute_files_become_settings_and_flags_adjust_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = chute_file(tmp_path, VLLM, monkeypatch)
    settings = load_settings({"concurrency": 3}, {}, chute_files=[target],
                             load_chute_file=load_chute_file)  # fmt: skip
    chute = settings.chutes[0]
    assert (chute.served_name, chute.concurrency, chute.engine) == ("org/tiny", 3, "vllm")
    config = tmp_path / "c.toml"
    config.write_text(f'[[chutes]]\nchute = "{target}"\nreplicas = 2\n')
    settings = load_settings({}, {}, config, load_chute_file=load_chute_file)
    assert (settings.chutes[0].replicas, settings.chutes[0].concurrency) == (2, 8)
