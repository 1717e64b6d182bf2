"""Metering against vLLM's own counters, read from the engine itself on its socket.

Over a mixed workload (chat, completions, n > 1, Responses, Messages, whole and streamed), the
tokens the gateway records for a key equal vLLM's `vllm:prompt_tokens_total` and
`vllm:generation_tokens_total`. Streams the client leaves count their prompt exactly and the
tokens relayed before the gateway saw the client go: at least what the client read, at most
what vLLM generated. What vLLM makes after that — until the closed connection reaches it —
is never read, so never counted: a few tokens when the gateway notices at once, hundreds when
a busy 2-core machine lets the gateway notice late (seen here: 186 relayed, ~1,700 made).
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import MODEL, OTHER_KEY
from tests.e2e.test_faults import EVENT_TIMEOUT, busy, vllm_metrics, wait_until
from tests.support.servers import Served, eventually

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# The second key of the session's gateway: plain keys are named in order.
KEY_NAME = "api-key-2"
ASK = [{"role": "user", "content": "Tell me about the sea and its ships."}]
WORKLOAD: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": ASK, "max_tokens": 12}),
    ("/v1/chat/completions", {"messages": ASK, "max_tokens": 9, "n": 2}),
    ("/v1/chat/completions", {"messages": ASK, "max_tokens": 15, "stream": True}),
    ("/v1/completions", {"prompt": "The sea", "max_tokens": 10}),
    ("/v1/completions", {"prompt": "The ships", "max_tokens": 11, "stream": True}),
    ("/v1/responses", {"input": "The harbour at dawn", "max_output_tokens": 16}),
    ("/v1/responses", {"input": "Gulls", "max_output_tokens": 16, "stream": True}),
    ("/v1/messages", {"messages": ASK, "max_tokens": 13}),
    ("/v1/messages", {"messages": ASK, "max_tokens": 14, "stream": True}),
]
# Streams left after this many events: the engine generates on until the gateway sees the
# close (long enough that none can end first).
CUT = {"messages": ASK, "max_tokens": 1900, "ignore_eos": True, "stream": True}
CUTS = (3, 8, 20)


def engine_counts(served: Served) -> tuple[float, float]:
    return (
        vllm_metrics(served, "vllm:prompt_tokens_total"),
        vllm_metrics(served, "vllm:generation_tokens_total"),
    )


def metered(client: httpx.Client) -> tuple[int, int, int]:
    rows = client.get("/users/me/usage", params={"chute": MODEL}).json()["data"]
    return (
        sum(r["requests"] for r in rows),
        sum(r["input_tokens"] for r in rows),
        sum(r["output_tokens"] for r in rows),
    )


class Counts:
    """What the engine and the gateway counted between two moments, the engine idle at both."""

    def __init__(self, served: Served, client: httpx.Client) -> None:
        self.served, self.client = served, client
        wait_until(lambda: busy(served) == 0, EVENT_TIMEOUT, "an idle engine")
        self.engine, self.gateway = engine_counts(served), metered(client)

    def since(self) -> tuple[tuple[float, float], tuple[int, int, int]]:
        wait_until(lambda: busy(self.served) == 0, EVENT_TIMEOUT, "the engine idle again")
        time.sleep(0.5)  # the last requests' settlement, after their replies ended
        engine, gateway = engine_counts(self.served), metered(self.client)
        return (
            (engine[0] - self.engine[0], engine[1] - self.engine[1]),
            (gateway[0] - self.gateway[0], gateway[1] - self.gateway[1],
             gateway[2] - self.gateway[2]),
        )  # fmt: skip


def test_recorded_tokens_equal_the_engines_own_counts(vllm_gateway: Served) -> None:
    headers = {"Authorization": f"Bearer {OTHER_KEY}"}
    with httpx.Client(base_url=vllm_gateway.base_url, headers=headers, timeout=120) as client:
        counts = Counts(vllm_gateway, client)
        # vLLM's counter counts a prompt once per sequence; the engine's usage once for n
        # choices, as OpenAI bills it.
        again = 0
        for path, body in WORKLOAD:
            with client.stream("POST", path, json={"model": MODEL, **body}) as reply:
                reply.read()
                assert reply.status_code == 200, (path, reply.text)
            if body.get("n", 1) > 1:
                again += reply.json()["usage"]["prompt_tokens"] * (body["n"] - 1)
        (engine_prompt, engine_output), (requests, prompt, output) = counts.since()
    assert requests == len(WORKLOAD)
    assert again > 0 and prompt + again == engine_prompt, (prompt, again, engine_prompt)
    assert output == engine_output, (output, engine_output)


def test_a_stream_its_client_left_counts_what_was_relayed(vllm_gateway: Served) -> None:
    headers = {"Authorization": f"Bearer {OTHER_KEY}"}
    with httpx.Client(base_url=vllm_gateway.base_url, headers=headers, timeout=120) as client:
        counts = Counts(vllm_gateway, client)
        logged = len(vllm_gateway.log_text())
        for events in CUTS:
            with client.stream("POST", "/v1/chat/completions",
                               json={"model": MODEL, **CUT}) as reply:  # fmt: skip
                lines = reply.iter_lines()
                seen = [line for line in (next(lines) for _ in range(2 * events)) if line]
                assert len(seen) == events
        (engine_prompt, engine_output), (requests, prompt, output) = counts.since()
    assert requests == len(CUTS) and prompt == engine_prompt, (prompt, engine_prompt)
    pattern = rf'" 499 .* tokens=(\d+)\+(\d+) key={KEY_NAME} '
    eventually(lambda: len(re.findall(pattern, vllm_gateway.log_text()[logged:])) >= len(CUTS))
    left = re.findall(pattern, vllm_gateway.log_text()[logged:])
    assert len(left) == len(CUTS), "a stream meant to be left ran to its end"
    # At least the tokens its client read (a chat stream's first event has none).
    for (_, tokens), events in zip(left, CUTS, strict=True):
        assert int(tokens) >= events - 1
    assert sum(int(t) for _, t in left) == output <= engine_output, (output, engine_output)
