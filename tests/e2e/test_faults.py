"""Fault injection against the real vLLM engine: cancellation proven by vLLM's own /metrics,
and an engine SIGKILLed under load.

vLLM shows work in progress in `vllm:num_requests_running`/`_waiting`, requests that ran to
their end in `vllm:request_success_total{finished_reason="length"}` and every token it made in
`vllm:generation_tokens_total`. Read from the engine itself, they prove that a client's
disconnect stopped the generation, rather than the gateway merely ceasing to relay it: the
engine goes idle at once, no request reaches its length, and far fewer tokens were made than
asked for. (vLLM 0.32 does not count aborts from its HTTP server under `abort`.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import API_KEY, MODEL, SIDE
from tests.support.servers import Served

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# Long enough that only an abort ends it early: eight sequences (vLLM runs each as a request of
# its own) filling the context, ignoring end-of-sequence; seconds even for the tiny model.
N = 8
LONG = {"model": MODEL, "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": 2000, "ignore_eos": True, "n": N}  # fmt: skip
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def engine_url(served: Served) -> str:
    ports = re.findall(r"\[tiny-llama\] starting engine: .* --port (\d+)", served.log_text())
    assert ports, "the engine's start line is not in the log"
    return f"http://127.0.0.1:{ports[-1]}"


def vllm_metric(served: Served, name: str, **labels: str) -> float:
    """Sum of one vLLM metric's samples whose labels include `labels`."""
    text = httpx.get(engine_url(served) + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def busy(served: Served) -> float:
    return vllm_metric(served, "vllm:num_requests_running") + vllm_metric(
        served, "vllm:num_requests_waiting"
    )


def progress(served: Served) -> tuple[float, float]:
    """(requests finished by reaching max_tokens, tokens generated), so far."""
    return (
        vllm_metric(served, "vllm:request_success_total", finished_reason="length"),
        vllm_metric(served, "vllm:generation_tokens_total"),
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def raw_request(served: Served, body: dict[str, object]) -> socket.socket:
    """Send a request on a bare socket, so the test decides exactly when the client leaves."""
    host, port = served.base_url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


def assert_cancelled(served: Served, before: tuple[float, float]) -> None:
    wait_until(lambda: busy(served) == 0, 5, "vLLM to drop the request")
    finished, generated = progress(served)
    assert finished == before[0], "a request ran to its max_tokens: it was not cancelled"
    assert generated - before[1] < N * LONG["max_tokens"] / 2  # type: ignore[operator]


@pytest.mark.parametrize("stream", [False, True], ids=["non-streaming", "stream-before-reading"])
def test_leaving_before_the_reply_aborts_the_engine_request(
    vllm_gateway: Served, stream: bool
) -> None:
    wait_until(lambda: busy(vllm_gateway) == 0, 30, "an idle engine")
    before = progress(vllm_gateway)
    sock = raw_request(vllm_gateway, {**LONG, "stream": stream})
    wait_until(lambda: busy(vllm_gateway) == N, 10, "the engine to start the request")
    sock.close()  # the client leaves without having read a byte
    assert_cancelled(vllm_gateway, before)


def test_leaving_mid_stream_aborts_the_engine_request(vllm_gateway: Served) -> None:
    wait_until(lambda: busy(vllm_gateway) == 0, 30, "an idle engine")
    before = progress(vllm_gateway)
    with (
        httpx.Client(base_url=vllm_gateway.base_url, headers=AUTH, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as reply,
    ):
        lines = reply.iter_lines()
        tokens = [line for line in (next(lines) for _ in range(20)) if line.startswith("data:")]
        assert len(tokens) >= 5
    assert_cancelled(vllm_gateway, before)


def test_a_killed_engine_fails_in_flight_requests_clearly_and_comes_back(
    vllm_gateway: Served,
) -> None:
    base = vllm_gateway.base_url
    pid = engine_pid(vllm_gateway)
    with (
        httpx.Client(base_url=base, headers=AUTH, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as reply,
    ):
        lines = reply.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        os.kill(pid, signal.SIGKILL)
        rest = [line for line in lines if line.startswith("data:")]
    # The stream ends with an error event, not silently and not with [DONE].
    assert rest and rest[-1] != "data: [DONE]"
    assert json.loads(rest[-1].removeprefix("data: "))["error"]["type"] == "upstream_error"

    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        wait_until(lambda: client.get("/ready").status_code == 503, 10, "readiness to drop")
        states = client.get("/ready").json()["chutes"]
        assert states[MODEL]["state"] in ("restarting", "starting")
        assert states[SIDE]["state"] == "ready"
        refused = client.post("/v1/chat/completions", json={**LONG, "max_tokens": 2, "n": 1})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        hello = {"model": SIDE, "messages": [{"role": "user", "content": "hi"}]}
        side = client.post("/v1/chat/completions", json=hello)
        assert side.status_code == 200  # the other chute serves on

        wait_until(lambda: client.get("/ready").status_code == 200, 300, "the engine to return")
        again = client.post("/v1/chat/completions", json={**LONG, "max_tokens": 2, "n": 1})
        assert again.status_code == 200
        metrics = client.get("/metrics").text
    assert f'chutebox_engine_restarts_total{{chute="{MODEL}",replica="0"}} 1.0' in metrics
    assert f'chutebox_engine_up{{chute="{MODEL}",replica="0"}} 1.0' in metrics


def engine_pid(served: Served) -> int:
    """The vLLM API server process (the engine's process-group leader)."""
    port = engine_url(served).rsplit(":", 1)[1]
    found = subprocess.run(["pgrep", "-f", f"vllm.*--port {port}"], capture_output=True,
                           text=True).stdout.split()  # fmt: skip
    assert len(found) == 1, f"expected one vLLM server process on port {port}: {found}"
    return int(found[0])
