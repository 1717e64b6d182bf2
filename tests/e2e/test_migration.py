"""Streams that survive their engine's connection dying, on real vLLM (CPU, the tiny model).

One vLLM server stands behind two "replicas": two proxies whose connections drop after a set
number of events, as the gateway sees an engine die (the engine behind lives on, so twenty
trials need no twenty restarts; the real SIGKILL is in test_replicas.py). The migrated
stream must equal the uninterrupted answer at temperature 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cutting_proxy import CuttingProxy
from tests.support.servers import Served, chutebox_serve, free_port, stop_group, wait_for

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]

KEY = "cpk_migration"
HEADERS = {"Authorization": f"Bearer {KEY}"}
TRIALS = 20


class Bench:
    def __init__(self, served: Served, cuts: list[int], proxies: list[CuttingProxy]) -> None:
        self.served, self.cuts, self.proxies = served, cuts, proxies


@pytest.fixture(scope="module")
def bench(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    folder = tmp_path_factory.mktemp("migration")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_model),
        "--served-model-name",
        "tiny",
        "--port",
        str(port),
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "512",
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        str(256 << 20),
    ]
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}
    with (folder / "vllm.log").open("wb") as sink:
        engine = subprocess.Popen(
            argv, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    cuts: list[int] = []
    proxies = [CuttingProxy(port, cuts), CuttingProxy(port, cuts)]
    try:
        wait_for(f"http://127.0.0.1:{port}/health", 300, engine, folder / "vllm.log")
        with proxies[0].running() as a, proxies[1].running() as b:
            config = folder / "chutes.toml"
            config.write_text(
                '[[chutes]]\nname = "tiny"\nmodel = "tiny"\nengine = "vllm"\n'
                f"url = {json.dumps([a, b])}\n"
            )
            args = ["--config", str(config), "--api-key", KEY]
            with chutebox_serve(args, folder / "chutebox.log", ready_timeout=120) as served:
                yield Bench(served, cuts, proxies)
    finally:
        stop_group(engine)


def stream(bench: Bench, path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The stream's text and its usage; fails on an error event."""
    reply = httpx.post(
        bench.served.base_url + path, json={**body, "stream": True}, headers=HEADERS, timeout=120
    )
    assert reply.status_code == 200, reply.text
    text, usage = "", dict[str, Any]()
    for block in reply.text.split("\n\n"):
        payload = block.removeprefix("data: ")
        if not block.startswith("data: ") or payload == "[DONE]":
            continue
        event = json.loads(payload)
        assert "error" not in event, event
        assert "token_ids" not in event and "prompt_token_ids" not in event
        usage = event.get("usage") or usage
        for choice in event["choices"]:
            assert "token_ids" not in choice
            text += (choice["delta"].get("content") or "") if "delta" in choice else choice["text"]
    return text, usage


def request(i: int) -> tuple[str, dict[str, Any]]:
    """Trial i's request: chat and completions in turn, each prompt its own."""
    body: dict[str, Any] = {"model": "tiny", "max_tokens": 40, "temperature": 0, "ignore_eos": True}
    if i % 2:
        return "/v1/completions", {**body, "prompt": f"Trial {i}: the river and the mill"}
    messages = [{"role": "user", "content": f"Trial {i}: tell me about the mill"}]
    return "/v1/chat/completions", {**body, "messages": messages}


def test_twenty_streams_cut_at_various_points_each_equal_the_answer_uninterrupted(
    bench: Bench,
) -> None:
    equal, cuts_made = 0, bench.proxies[0].cut + bench.proxies[1].cut
    mismatches = []
    for i in range(TRIALS):
        path, body = request(i)
        whole_text, whole_usage = stream(bench, path, body)
        # Chat streams start with a role event; k events in is then k - 1 tokens.
        bench.cuts.append([1, 2, 3, 5, 8, 13, 21, 34][i % 8])
        text, usage = stream(bench, path, body)
        assert usage["completion_tokens"] == whole_usage["completion_tokens"] == 40
        assert usage["prompt_tokens"] == whole_usage["prompt_tokens"]
        if text == whole_text:
            equal += 1
        else:
            mismatches.append((i, whole_text, text))
    assert bench.proxies[0].cut + bench.proxies[1].cut - cuts_made == TRIALS
    assert equal >= TRIALS - 1, mismatches
    metrics = httpx.get(bench.served.base_url + "/metrics").text
    assert f'chutebox_request_migrations_total{{chute="tiny"}} {TRIALS}.0' in metrics
    assert bench.served.log_text().count(" migrated=1 ") == TRIALS
