"""LoRA adapters on vLLM's CPU build: adapters made here with peft on the tiny Llama, served
as `tiny:NAME` by a chute of two replicas, loaded at run time; an adapter's answer differs
from the base model's and equals vLLM's own answer with the adapter given at its start."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import Served, chutebox_serve, vllm_server

pytestmark = [pytest.mark.engine, pytest.mark.slow]

KEY = "cpk_adapters"
ENGINE_ARGS = "--dtype float32 --max-model-len 512 --enforce-eager"
NAMES = ("sql", "poet", "legal")
ASK = [{"role": "user", "content": "Write about the harbour."}]


def make_adapter(model: Path, folder: Path, seed: int) -> Path:
    """A rank-8 LoRA on every attention projection, its weights random (peft's own init
    would make it a no-op) and large enough to change greedy answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])  # fmt: skip
    tuned = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in tuned.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.5)
    tuned.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return {n: make_adapter(tiny_model, folder / n, i) for i, n in enumerate(NAMES)}


@pytest.fixture(scope="module")
def served(
    tiny_model: Path, adapters: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve-adapters")
    listed = ", ".join(f"{n} = {json.dumps(str(p))}" for n, p in adapters.items())
    config = folder / "chutes.toml"
    config.write_text(
        f'[[chutes]]\nname = "tiny"\nmodel = {json.dumps(str(tiny_model))}\nreplicas = 2\n'
        f'engine_args = "{ENGINE_ARGS}"\nadapters = {{ {listed} }}\n'
    )
    args = ["--config", str(config), "--api-key", KEY]
    with chutebox_serve(args, folder / "chutebox.log", ready_timeout=420) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def direct(
    tiny_model: Path, adapters: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """vLLM's own server with the `sql` adapter given at its start."""
    log = tmp_path_factory.mktemp("direct-lora") / "vllm.log"
    args = ["--served-model-name", "tiny", "--enable-lora", "--max-lora-rank", "8",
            "--lora-modules", f"sql={adapters['sql']}", *shlex.split(ENGINE_ARGS)]  # fmt: skip
    with vllm_server(tiny_model, log, args) as url:
        yield url


def answer(base: str, model: str, key: str | None = KEY, **extra: Any) -> str:
    body = {"model": model, "messages": ASK, "max_tokens": 12, "temperature": 0, **extra}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reply = httpx.post(base + "/v1/chat/completions", json=body, headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["choices"][0]["message"]["content"])


def test_an_adapter_answers_as_vllm_with_it_given_at_start(served: Served, direct: str) -> None:
    tuned = answer(served.base_url, "tiny:sql")
    assert tuned != answer(served.base_url, "tiny")
    assert tuned == answer(direct, "sql", key=None)


def test_three_adapters_on_two_replicas_load_once_each_where_they_land(served: Served) -> None:
    models = [f"tiny:{n}" for n in NAMES] * 4 + ["tiny:sql"] * 12
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda m: answer(served.base_url, m), models))
    assert all(answers)
    loaded = re.findall(r"\[tiny/(\d)\] adapter (\w+) loaded", served.log_text())
    assert len(loaded) == len(set(loaded)), loaded  # each replica loaded each adapter once
    assert {name for _, name in loaded} == set(NAMES)
