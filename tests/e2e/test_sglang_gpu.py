"""SGLang end to end: needs CUDA and an interpreter with SGLang (skipped elsewhere).

Set CHUTEBOX_TEST_SGLANG_PYTHON to the SGLang environment's python when it is not this one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import API_KEY
from tests.support.servers import chutebox_serve

pytestmark = [pytest.mark.gpu, pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]


def test_sglang_serves_chat_through_chutebox(tiny_model: Path, tmp_path: Path) -> None:
    python = os.environ.get("CHUTEBOX_TEST_SGLANG_PYTHON", sys.executable)
    config = tmp_path / "chutes.toml"
    config.write_text(
        f'[[chutes]]\nname = "tiny-sglang"\nmodel = {json.dumps(str(tiny_model))}\n'
        f'engine = "sglang"\npython = {json.dumps(python)}\n'
        'engine_args = "--mem-fraction-static 0.3 --disable-cuda-graph"\n'
    )
    args = ["--config", str(config), "--api-key", API_KEY]
    with chutebox_serve(args, tmp_path / "log", ready_timeout=600) as served:
        with openai.OpenAI(base_url=served.base_url + "/v1", api_key=API_KEY) as sdk:
            reply = sdk.chat.completions.create(
                model="tiny-sglang", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            stream = sdk.chat.completions.create(
                model="tiny-sglang", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                stream=True,
            )  # fmt: skip
            chunks = list(stream)
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    assert chunks[-1].usage is not None
