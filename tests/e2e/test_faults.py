"""Fault injection against the real vLLM engine: cancellation proven by vLLM's own /metrics,
and an engine SIGKILLed under load.

vLLM shows work in progress in `vllm:num_requests_running`/`_waiting`, requests that ran to
their end in `vllm:request_success_total{finished_reason="length"}` and every token it made in
`vllm:generation_tokens_total`. Read from the engine itself (on its socket), they prove that a
client's disconnect stopped the generation, rather than the gateway merely ceasing to relay
it: the engine goes idle long before the work could have finished, and no request reaches its
length. (vLLM 0.32 does not count aborts from its HTTP server under `abort`.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.conftest import API_KEY, MODEL, SIDE
from tests.support.servers import Served, engine_socket, vllm_pid

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# Long enough that only an abort ends it early: 96 sequences (vLLM runs each as a request of
# its own) filling the context, ignoring end-of-sequence: about 190,000 tokens, ~27 s of the
# engine's own work on an idle 2-core machine, and a loaded machine slows the engine with the
# test. (Per-token logprobs would make it longer, but load vLLM's API server instead, which
# then answers its /metrics and notices disconnects late: a test of the API server's backlog.)
# The tests wait on events (the engine's metrics, a stream's first bytes), each given a minute,
# never on a time the machine must beat.
N = 96
LONG = {"model": MODEL, "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": 2000, "ignore_eos": True, "n": N}  # fmt: skip
SHORT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2}
AUTH = {"Authorization": f"Bearer {API_KEY}"}
EVENT_TIMEOUT = 60.0


@contextlib.contextmanager
def engine(served: Served) -> Iterator[httpx.Client]:
    """A client of the engine itself, on its socket (its /metrics needs no key)."""
    transport = httpx.HTTPTransport(uds=engine_socket(served, MODEL))
    with httpx.Client(transport=transport, base_url="http://engine", timeout=30) as client:
        yield client


def vllm_metrics(served: Served, *names: str, **labels: str) -> float:
    """Sum of the samples of `names` whose labels include `labels`, from one scrape."""
    with engine(served) as client:
        text = client.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        name = line.partition("{")[0]
        if name in names and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def busy(served: Served) -> float:
    return vllm_metrics(served, "vllm:num_requests_running", "vllm:num_requests_waiting")


def progress(served: Served) -> tuple[float, float]:
    """(requests finished by reaching max_tokens, tokens generated), so far."""
    return (
        vllm_metrics(served, "vllm:request_success_total", finished_reason="length"),
        vllm_metrics(served, "vllm:generation_tokens_total"),
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def raw_request(served: Served, body: dict[str, object]) -> Iterator[socket.socket]:
    """Send a request on a bare socket, so the test decides exactly when the client leaves."""
    host, port = served.base_url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        yield sock


def assert_cancelled(served: Served, before: tuple[float, float]) -> None:
    """The engine went idle and none of the sequences ran to its max_tokens.

    An engine that kept generating would stay busy for the whole of LONG's run and then count
    sixteen requests finished by length: either the wait below times out or the count moved.
    Neither depends on how fast the machine is.
    """
    wait_until(lambda: busy(served) == 0, EVENT_TIMEOUT, "vLLM to drop the request")
    finished, generated = progress(served)
    assert finished == before[0], "a request ran to its max_tokens: it was not cancelled"
    assert generated - before[1] < N * LONG["max_tokens"]  # type: ignore[operator]


@pytest.mark.parametrize("stream", [False, True], ids=["non-streaming", "stream-before-reading"])
def test_leaving_before_the_reply_aborts_the_engine_request(
    vllm_gateway: Served, stream: bool
) -> None:
    wait_until(lambda: busy(vllm_gateway) == 0, EVENT_TIMEOUT, "an idle engine")
    before = progress(vllm_gateway)
    with raw_request(vllm_gateway, {**LONG, "stream": stream}):
        wait_until(lambda: busy(vllm_gateway) >= N, EVENT_TIMEOUT, "the engine to start it")
    # The client left without having read a byte.
    assert_cancelled(vllm_gateway, before)


def test_leaving_mid_stream_aborts_the_engine_request(vllm_gateway: Served) -> None:
    wait_until(lambda: busy(vllm_gateway) == 0, EVENT_TIMEOUT, "an idle engine")
    before = progress(vllm_gateway)
    with (
        httpx.Client(base_url=vllm_gateway.base_url, headers=AUTH, timeout=EVENT_TIMEOUT) as client,
        client.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as reply,
    ):
        lines = reply.iter_lines()
        tokens = [line for line in (next(lines) for _ in range(20)) if line.startswith("data:")]
        assert len(tokens) >= 5
    assert_cancelled(vllm_gateway, before)


class Prober:
    """Sends a short request every 50 ms from a thread, recording every reply, until stopped."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.replies: list[tuple[int, str | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        # "Never a hang": a request that gets no answer in 30 s fails the test.
        with httpx.Client(base_url=self.served.base_url, headers=AUTH, timeout=30) as client:
            while not self.stop.is_set():
                reply = client.post("/v1/chat/completions", json=SHORT)
                self.replies.append((reply.status_code, reply.headers.get("retry-after")))
                time.sleep(0.05)

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def recovered(self) -> bool:
        """A 503 was seen, and a 200 came after it."""
        statuses = [status for status, _ in self.replies]
        return 503 in statuses and 200 in statuses[statuses.index(503) :]


def test_a_killed_engine_is_503_until_it_is_back_never_502(vllm_gateway: Served) -> None:
    base = vllm_gateway.base_url
    pid = vllm_pid(vllm_gateway)
    with (
        httpx.Client(base_url=base, headers=AUTH, timeout=EVENT_TIMEOUT) as client,
        client.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as reply,
        Prober(vllm_gateway) as prober,
    ):
        lines = reply.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        wait_until(lambda: len(prober.replies) >= 3, EVENT_TIMEOUT, "the prober's first replies")
        os.kill(pid, signal.SIGKILL)
        # The stream that was mid-reply ends with an error event, not silently or with [DONE].
        rest = [line for line in lines if line.startswith("data:")]
        assert rest and rest[-1] != "data: [DONE]"
        assert json.loads(rest[-1].removeprefix("data: "))["error"]["type"] == "upstream_error"
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as other:
            states = other.get("/ready").json()["chutes"]
            assert states[SIDE]["state"] == "ready"
            hello = {"model": SIDE, "messages": [{"role": "user", "content": "hi"}]}
            assert other.post("/v1/chat/completions", json=hello).status_code == 200
        wait_until(prober.recovered, 600, "the engine to come back")
    statuses = {status for status, _ in prober.replies}
    assert statuses <= {200, 503}, prober.replies
    assert all(after for status, after in prober.replies if status == 503)
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        metrics = client.get("/metrics").text
    assert f'chutebox_engine_restarts_total{{chute="{MODEL}",replica="0"}} 1.0' in metrics
    assert f'chutebox_engine_up{{chute="{MODEL}",replica="0"}} 1.0' in metrics
