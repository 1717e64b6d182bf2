"""On-demand chutes under `chutebox serve`: loaded by their first request, unloaded to make
room or after keep_alive. First with fake engines (real processes), then with two tiny vLLM
CPU chutes and room for one."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import chutebox_serve, engine_pids, eventually

KEY = "cpk_on_demand"
AUTH = {"Authorization": f"Bearer {KEY}"}


def config(folder: Path, chutes: list[str], max_loaded: int, keep_alive: str) -> Path:
    text = f"max_loaded = {max_loaded}\n"
    for entry in chutes:
        text += f'\n[[chutes]]\n{entry}\nload = "on-demand"\nkeep_alive = "{keep_alive}"\n'
    path = folder / "chutes.toml"
    path.write_text(text)
    return path


def states(base: str) -> dict[str, str]:
    models = httpx.get(base + "/v1/models", headers=AUTH).json()["data"]
    return {m["id"]: m["state"] for m in models}


def chat(base: str, model: str, timeout: float = 120, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi there"}],
            "max_tokens": 4, **extra}  # fmt: skip
    return httpx.post(base + "/v1/chat/completions", json=body, headers=AUTH, timeout=timeout)


def metric(base: str, name: str, chute: str) -> float:
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith(f'{name}{{chute="{chute}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.serve
def test_two_chutes_with_room_for_one_take_turns(tmp_path: Path) -> None:
    entries = [f'name = "{n}"\nengine = "fake"\nmodel = {json.dumps(str(tmp_path))}'
               for n in ("a", "b")]  # fmt: skip
    args = ["--config", str(config(tmp_path, entries, 1, "-1")), "--api-key", KEY]
    with chutebox_serve(args, tmp_path / "log", ready_timeout=60) as served:
        base = served.base_url
        # Ready with nothing loaded: on-demand chutes do not hold /ready back.
        assert states(base) == {"a": "unloaded", "b": "unloaded"}
        for model in ("a", "b", "a", "b"):
            reply = chat(base, model)
            assert reply.status_code == 200, reply.text
            assert reply.json()["model"] == model
            other = "b" if model == "a" else "a"
            assert states(base) == {model: "loaded", other: "unloaded"}
        assert metric(base, "chutebox_chute_loads_total", "a") == 2
        assert metric(base, "chutebox_chute_unloads_total", "a") == 2
        assert metric(base, "chutebox_chute_unloads_total", "b") == 1
        loaded = r'"POST /v1/chat/completions" 200 .* loaded=\d'
        assert eventually(lambda: len(re.findall(loaded, served.log_text())) == 4, 10)
        log = served.log_text()
        assert "[a] unloading: making room for b" in log
        status = httpx.get(base + "/status", headers=AUTH).json()
        b = next(c for c in status["chutes"] if c["name"] == "b")
        assert b["load"]["mode"] == "on-demand" and b["load"]["loads"] == 2
        assert b["load"]["unloads_in_seconds"] is None  # keep_alive -1: never


@pytest.mark.serve
def test_keep_alive_unloads_an_idle_chute(tmp_path: Path) -> None:
    entries = [f'name = "a"\nengine = "fake"\nmodel = {json.dumps(str(tmp_path))}']
    args = ["--config", str(config(tmp_path, entries, 0, "2s")), "--api-key", KEY]
    with chutebox_serve(args, tmp_path / "log", ready_timeout=60) as served:
        assert chat(served.base_url, "a").status_code == 200
        assert states(served.base_url)["a"] == "loaded"
        began = time.monotonic()
        assert eventually(lambda: states(served.base_url)["a"] == "unloaded", 20)
        assert time.monotonic() - began >= 1
        assert "[a] unloading: idle for 2s" in served.log_text()
        # A request's own keep_alive, as Ollama takes it: for ever, then 0 (unload when idle).
        assert chat(served.base_url, "a", keep_alive=-1).status_code == 200  # loaded again
        time.sleep(3)
        assert states(served.base_url)["a"] == "loaded"
        assert chat(served.base_url, "a", keep_alive="0").status_code == 200
        assert eventually(lambda: states(served.base_url)["a"] == "unloaded", 20)
        bad = chat(served.base_url, "a", keep_alive="soon")
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "keep_alive"


@pytest.mark.serve
def test_engines_in_sleep_mode_sleep_and_wake_instead_of_stopping(tmp_path: Path) -> None:
    """Engines that serve vLLM's sleep routes (the fake plays them, with a set delay) are put
    to sleep to make room and woken for their next request: the same process, not a new
    start; a sleeping chute holds no room."""
    entries = [f'name = "{n}"\nengine = "fake"\nmodel = {json.dumps(str(tmp_path))}\n'
               'engine_args = "--enable-sleep-mode --sleep-delay 0.3"'
               for n in ("a", "b")]  # fmt: skip
    args = ["--config", str(config(tmp_path, entries, 1, "-1")), "--api-key", KEY]
    with chutebox_serve(args, tmp_path / "log", ready_timeout=60) as served:
        base = served.base_url
        assert chat(base, "a").status_code == 200
        first = engine_pids(served)
        assert chat(base, "b").status_code == 200
        assert states(base) == {"a": "sleeping", "b": "loaded"}
        assert chat(base, "a").status_code == 200
        assert states(base) == {"a": "loaded", "b": "sleeping"}
        assert set(first) <= set(engine_pids(served))  # a's engine woke: not started again
        assert len(engine_pids(served)) == 2
        assert metric(base, "chutebox_chute_wakes_total", "a") == 1
        assert metric(base, "chutebox_chute_sleeps_total", "a") == 1
        assert metric(base, "chutebox_chute_loads_total", "a") == 2
        log = served.log_text()
        assert "[a/0] asleep (level 1)" in log and "[a/0] awake" in log
        assert "/sleep" not in httpx.get(base + "/openapi.json").text  # never public
        assert httpx.post(base + "/sleep?level=1", headers=AUTH).status_code == 404


@pytest.mark.engine
@pytest.mark.slow
def test_two_vllm_chutes_with_room_for_one(tiny_model: Path, tmp_path: Path) -> None:
    """The issue's case on vLLM's CPU build: requests alternating between two chutes that do
    not fit together all succeed, in the order they came, each switch a stop and a start."""
    args_line = "--dtype float32 --max-model-len 512 --enforce-eager"
    entries = [f'name = "{n}"\nmodel = {json.dumps(str(tiny_model))}\n'
               f'engine_args = "{args_line}"' for n in ("left", "right")]  # fmt: skip
    args = ["--config", str(config(tmp_path, entries, 1, "-1")), "--api-key", KEY]
    with chutebox_serve(args, tmp_path / "log", ready_timeout=120) as served:
        codes = []
        for model in ("left", "right", "left"):
            reply = chat(served.base_url, model, timeout=400)
            codes.append((model, reply.status_code, reply.json().get("model")))
        assert codes == [(m, 200, m) for m in ("left", "right", "left")], served.log_text()[-3000:]
        assert states(served.base_url) == {"left": "loaded", "right": "unloaded"}
