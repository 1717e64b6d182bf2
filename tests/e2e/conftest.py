"""One real vLLM engine (CPU build) on a tiny local Llama, behind `chutebox serve`, per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import Served, chutebox_serve
from tests.support.tiny_llama import build_tiny_llama

API_KEY = "cpk_test_primary"
OTHER_KEY = "cpk_test_secondary"
MODEL = "tiny-llama"
SIDE = "side"
ENGINE_ARGS = (
    "--dtype bfloat16 --max-model-len 2048 --enforce-eager --max-num-seqs 128 "
    "--enable-auto-tool-choice --tool-call-parser hermes "
    "--structured-outputs-config "
    + "'"
    + json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})
    + "'"
)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def vllm_gateway(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve")
    config = folder / "chutes.toml"
    # Random weights ramble whitespace inside tool calls unless strict tool calling is off
    # (see feasibility notes); real models need neither setting.
    config.write_text(
        f"[[chutes]]\nname = {json.dumps(MODEL)}\nmodel = {json.dumps(str(tiny_model))}\n"
        f"engine_args = {json.dumps(ENGINE_ARGS)}\nconcurrency = 4\n"
        # The Responses API's store is off in vLLM unless asked for (it never evicts).
        'env = { VLLM_ENFORCE_STRICT_TOOL_CALLING = "0", VLLM_ENABLE_RESPONSES_API_STORE = "1" }\n'
        # A second chute, on the fake engine: the fault tests show it serving on while the
        # vLLM one restarts.
        f'\n[[chutes]]\nname = {json.dumps(SIDE)}\nengine = "fake"\n'
        f"model = {json.dumps(str(folder))}\n"
    )
    # The gateway's keys from the environment, as README advises: not in `ps` either.
    keys = {"CHUTEBOX_API_KEYS": f"{API_KEY},{OTHER_KEY}"}
    # --max-n 128: the fault tests' long requests are 96 sequences of one request.
    args = ["--config", str(config), "--max-n", "128"]
    with chutebox_serve(args, folder / "chutebox.log", ready_timeout=420, env=keys) as served:
        yield served
