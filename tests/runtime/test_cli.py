"""`chutebox serve` as a real process with the fake engine: keys, config errors, hub, shutdown."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime.cli import build_parser, flags_from
from tests.support.fake_hub import FakeHub
from tests.support.servers import (
    ROOT,
    Served,
    chutebox_serve,
    engine_pids,
    eventually,
    group_alive,
    pid_alive,
    ready_of,
    wait_replicas_ready,
)
from tests.support.uvicorn_thread import serve_in_thread

COMMIT = "c" * 40


def chutebox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_flags_come_from_the_schema() -> None:
    namespace = build_parser().parse_args(
        ["serve", "--model", "m", "--api-key", "a", "--api-key", "b", "--no-auth",
         "--engine-env", "A=1", "--concurrency", "3"]
    )  # fmt: skip
    assert flags_from(namespace) == {
        "model": "m", "api_keys": ["a", "b"], "auth": False, "env": {"A": "1"},
        "concurrency": "3",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "org/name"], "needs a pinned revision"),
        (["--model", "/tmp", "--engine", "tensorrt"], "unknown engine 'tensorrt'"),
        (["--model", "/tmp", "--engine-args", "--api-key x"], "may not set --api-key"),
        (["--model", "/tmp", "--engine-args", "--uds /tmp/s"], "may not set --uds"),
        (["--model", "/tmp", "--engine-env", "VLLM_API_KEY=k"], "env may not set VLLM_API_KEY"),
        (["--model", "/tmp", "--engine-args", "-tp two"], "takes a positive integer"),
        (["--model", "/tmp", "--engine-args", "'unbalanced"], "engine_args"),
        (["--model", "/tmp", "--revision", "main"], "40-hex"),
        (["--model", "/tmp", "--engine", "sglang"], "cannot import sglang; install it there"),
        (["--model", "/tmp", "--python", "/no/such/python"], "cannot be run"),
        (["--model", "/tmp", "--engine", "fake", "--node-rank", "1"], "nothing runs here"),
        (["--model", "/tmp", "--engine", "fake", "--nodes", "2"], "runs on one node"),
        (
            ["--model", "m", "--url", "http://e:1", "--api-key-env", "NOPE_UNSET"],
            "NOPE_UNSET is not set",
        ),
        (["--model", "m", "--url", "http://e:1/v1"], "without a path"),
        (["--model", "/tmp", "--engine", "openai"], "give its `url`"),
    ],
)
def test_config_errors_exit_2_before_anything_starts(args: list[str], message: str) -> None:
    result = chutebox("serve", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.serve
def test_generated_key_is_printed_and_required(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny"]
    with chutebox_serve(args, tmp_path / "log") as served:
        match = re.search(r"^\s+(cbx-\S+)$", served.log_text(), re.MULTILINE)
        assert match, served.log_text()
        key = match.group(1)
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
        url = served.base_url + "/v1/chat/completions"
        assert httpx.post(url, json=chat).status_code == 401
        assert httpx.post(url, json=chat, headers={"X-API-Key": key}).status_code == 200


@pytest.mark.serve
def test_no_auth_opts_out(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth"]
    with chutebox_serve(args, tmp_path / "log") as served:
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(served.base_url + "/v1/chat/completions", json=chat).status_code == 200


@pytest.fixture
def hub() -> Iterator[tuple[FakeHub, str]]:
    fake = FakeHub("org/tiny", COMMIT, {"config.json": b"{}"})
    with serve_in_thread(fake.app()) as base_url:
        yield fake, base_url


@pytest.mark.serve
def test_hub_models_are_fetched_before_the_engine_starts(
    tmp_path: Path, hub: tuple[FakeHub, str]
) -> None:
    fake, base_url = hub
    env = {"HF_ENDPOINT": base_url, "HF_HOME": str(tmp_path / "hf")}
    args = ["--engine", "fake", "--model", "org/tiny", "--revision", COMMIT, "--no-auth"]
    with chutebox_serve(args, tmp_path / "log", env=env) as served:
        card = httpx.get(served.base_url + "/v1/models/org/tiny").json()
    assert fake.downloads == ["config.json"]
    snapshot = tmp_path / "hf" / "hub" / "models--org--tiny" / "snapshots" / COMMIT
    assert card["root"] == str(snapshot)


@pytest.mark.serve
def test_sigterm_leaves_no_engine_behind(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth"]
    with chutebox_serve(args, tmp_path / "log") as served:
        pids = engine_pids(served)
        assert len(pids) == 1, served.log_text()
        served.proc.terminate()
        assert served.proc.wait(30) == 0  # a drained, clean stop
        assert "Application shutdown complete" in served.log_text()
    assert not group_alive(pids[0])


@pytest.mark.serve
def test_sigterm_drains_in_flight_requests_before_stopping(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth",
            "--shutdown-timeout", "20", "--log-format", "json"]  # fmt: skip
    slow = {"model": "tiny", "fake_delay": 2.0, "messages": [{"role": "user", "content": "hi"}]}
    with chutebox_serve(args, tmp_path / "log") as served:
        url = served.base_url + "/v1/chat/completions"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.post, url, json=slow, timeout=30)
            tiny = lambda: ready_of(served.base_url)["chutes"]["tiny"]  # noqa: E731
            assert eventually(lambda: tiny()["replicas"][0]["outstanding"] == 1)  # at the engine
            served.proc.terminate()
            assert eventually(lambda: ready_of(served.base_url)["code"] == 503)  # draining
            ready = httpx.get(served.base_url + "/ready")
            refused = httpx.post(url, json={**slow, "fake_delay": 0})
            finished = in_flight.result()
        assert served.proc.wait(30) == 0
        lines = [json.loads(line) for line in served.log_text().splitlines() if line.strip()]
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert finished.status_code == 200
    messages = [line["message"] for line in lines]
    assert any(m.startswith("SIGTERM: draining") for m in messages)
    assert "stopped (SIGTERM)" in messages
    assert "Application shutdown complete." in messages
    access = [line for line in lines if line["logger"] == "chutebox.access"]
    statuses = {a["status"] for a in access if a["path"] == "/v1/chat/completions"}
    assert statuses >= {200, 503}


@pytest.mark.serve
def test_ctrl_c_drains_like_sigterm_and_ends_without_a_traceback(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth"]
    with chutebox_serve(args, tmp_path / "log") as served:
        pids = engine_pids(served)
        # A terminal's Ctrl-C: SIGINT to the foreground process group (engines have their own).
        os.killpg(served.proc.pid, signal.SIGINT)
        assert served.proc.wait(30) == 0
        output = served.log_text()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "SIGINT: draining" in output and "stopped (SIGINT)" in output
    assert not group_alive(pids[0])


@pytest.mark.serve
def test_a_second_ctrl_c_skips_the_wait_for_requests_in_flight(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth",
            "--shutdown-timeout", "60"]  # fmt: skip
    slow = {"model": "tiny", "fake_delay": 60, "messages": [{"role": "user", "content": "hi"}]}
    with chutebox_serve(args, tmp_path / "log") as served:
        url = served.base_url + "/v1/chat/completions"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.post, url, json=slow, timeout=90)
            deadline = time.monotonic() + 30
            while (
                'chutebox_requests_in_flight{chute="tiny"} 1.0'
                not in httpx.get(served.base_url + "/metrics").text
            ):
                assert time.monotonic() < deadline, "the request never went in flight"
                time.sleep(0.05)
            os.killpg(served.proc.pid, signal.SIGINT)
            wait_until_logged(served, "SIGINT: draining", "the drain to start")
            os.killpg(served.proc.pid, signal.SIGINT)
            assert served.proc.wait(30) == 0  # long before the request's 60 s
            cut = in_flight.result()
    # The request still in flight was ended with a clean 503, not dropped or a 500.
    assert cut.status_code == 503 and cut.headers["retry-after"]
    assert "stopping" in cut.json()["error"]["message"]
    output = served.log_text()
    assert "SIGINT again: stopping without waiting" in output
    assert "Traceback" not in output


def wait_until_logged(served: Served, text: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while text not in served.log_text():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_plan_prints_a_table_and_json(tmp_path: Path) -> None:
    model = tmp_path / "llama-8b"
    model.mkdir()
    config = {
        "model_type": "llama",
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "hidden_size": 4096,
        "max_position_embeddings": 8192,
    }
    (model / "config.json").write_text(json.dumps(config))
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 16_060_522_496}, "weight_map": {}})
    )  # fmt: skip
    args = ["plan", "--model", str(model), "--gpus", "4xH100", "--concurrency", "8"]
    table = chutebox(*args)
    assert table.returncode == 0, table.stderr
    assert "llama-8b" in table.stdout and "TP×PP" in table.stdout
    assert "safetensors index total_size" in table.stdout
    data = json.loads(chutebox(*args, "--json").stdout)
    replicas = data["chutes"][0]["replicas"]
    assert [r["placements"][0]["gpus"] for r in replicas] == [[0], [1], [2], [3]]


@pytest.mark.parametrize(
    ("engine", "args"),
    [("sglang", "--tp-size 2"), ("sglang", "--tp 2"), ("vllm", "-tp 2"),
     ("vllm", "--tensor-parallel-size=2")],
)  # fmt: skip
def test_plan_reads_each_engines_own_tensor_parallel_flag(
    tmp_path: Path, engine: str, args: str
) -> None:
    planned = chutebox("plan", "--engine", engine, "--model", "org/m", "--revision", COMMIT,
                       "--params", "8B", f"--engine-args={args}", "--gpus", "4xH100-80GB",
                       "--json")  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    replicas = json.loads(planned.stdout)["chutes"][0]["replicas"]
    assert [(r["tp"], r["placements"][0]["gpus"]) for r in replicas] == [(2, [0, 1]), (2, [2, 3])]


def test_plan_refusals_exit_2(tmp_path: Path) -> None:
    result = chutebox("plan", "--model", "org/big", "--revision", COMMIT, "--params", "405B",
                      "--gpus", "2x4090")  # fmt: skip
    assert result.returncode == 2 and "needs" in result.stderr
    typo = chutebox("plan", "--model", str(tmp_path), "--node-selector", '{"num_gpus": 2}')
    assert typo.returncode == 2 and "did you mean 'gpu_count'" in typo.stderr


@pytest.mark.serve
def test_replicas_share_the_load(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth",
            "--replicas", "2"]  # fmt: skip
    with chutebox_serve(args, tmp_path / "log") as served:
        ready = wait_replicas_ready(served.base_url, "tiny", timeout=60)
        assert [r["state"] for r in ready] == ["ready", "ready"]
        slow = {"model": "tiny", "stream": True, "fake_delay": 0.3,
                "messages": [{"role": "user", "content": "a b c d"}]}  # fmt: skip
        url = served.base_url + "/v1/chat/completions"
        with httpx.Client(timeout=30) as one, httpx.Client(timeout=30) as two:
            with one.stream("POST", url, json=slow), two.stream("POST", url, json=slow):
                busy = httpx.get(served.base_url + "/ready").json()["chutes"]["tiny"]["replicas"]
                assert [r["outstanding"] for r in busy] == [1, 1]
        assert "[tiny/0]" in served.log_text() and "[tiny/1]" in served.log_text()


SGLANG_CHUTE = f"""
from chutes.chute import NodeSelector
from chutes.chute.template.sglang import build_sglang_chute

chute = build_sglang_chute(username="me", model_name="org/tiny", revision="{COMMIT}",
                           node_selector=NodeSelector(gpu_count=2), concurrency=4)
"""


def test_an_sglang_chute_file_goes_as_far_as_launching(tmp_path: Path) -> None:
    (tmp_path / "sg_chute.py").write_text(SGLANG_CHUTE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    # The plan reads the template's NodeSelector: two GPUs per replica.
    planned = run("plan", "sg_chute:chute", "--gpus", "4xH100", "--params", "8B", "--json")
    assert planned.returncode == 0, planned.stderr
    replicas = json.loads(planned.stdout)["chutes"][0]["replicas"]
    assert [r["tp"] for r in replicas] == [2, 2]
    served = run("serve", "sg_chute:chute")
    assert served.returncode == 2
    assert "engine sglang" in served.stderr and "cannot import sglang" in served.stderr


@pytest.mark.serve
def test_engines_die_with_a_killed_chutebox(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth"]
    with chutebox_serve(args, tmp_path / "log") as served:
        pids = engine_pids(served)
        assert len(pids) == 1, served.log_text()
        served.proc.kill()  # SIGKILL: no lifespan, no cleanup of chutebox's own
        served.proc.wait(10)
        for _ in range(50):
            if not pid_alive(pids[0]):
                break
            time.sleep(0.1)
        assert not pid_alive(pids[0]), "the engine outlived chutebox"


@pytest.mark.serve
def test_sighup_reads_the_keys_file_again_and_sigterm_keeps_the_usage(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "ann"\nkey = "sk-aaaa"\n')
    db = tmp_path / "usage.db"
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny",
            "--keys-file", str(keys), "--usage-db", str(db)]  # fmt: skip
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    with chutebox_serve(args, tmp_path / "log") as served:
        assert "cbx-" not in served.log_text()  # named keys: none generated
        url = served.base_url + "/v1/chat/completions"

        def status(key: str) -> int:
            return httpx.post(url, json=chat, headers={"X-API-Key": key}).status_code

        assert (status("sk-aaaa"), status("sk-bbbb")) == (200, 401)
        # The same size and time as before: the file's watch sees no change, SIGHUP does.
        seen = keys.stat()
        keys.write_text('[[keys]]\nname = "bob"\nkey = "sk-bbbb"\n')
        os.utime(keys, ns=(seen.st_atime_ns, seen.st_mtime_ns))
        time.sleep(1.5)
        assert status("sk-bbbb") == 401
        served.proc.send_signal(signal.SIGHUP)
        assert eventually(lambda: status("sk-bbbb") == 200, 10)
        assert status("sk-aaaa") == 401
        served.proc.terminate()
        assert served.proc.wait(30) == 0
    rows = sqlite3.connect(db).execute("SELECT key, SUM(requests) FROM usage GROUP BY key")
    assert sorted(rows) == [("ann", 1), ("bob", 1)]
