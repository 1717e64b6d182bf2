"""Two CPU replicas of the tiny model on vLLM, each pinned to its own core, sharing requests;
the gateway traces to a test OTLP receiver, and so do the engines it starts."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import API_KEY
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.servers import (
    Served,
    chutebox_serve,
    engine_pids,
    eventually,
    wait_replicas_ready,
)
from tests.support.tiny_llama import CORPUS
from tests.support.uvicorn_thread import serve_in_thread

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]
# Engines the migration test kills: 2 in CI (each costs a restart, ~30 s on 2 cores). More
# (CHUTEBOX_MIGRATION_KILLS=6) is a longer run; past about 8 back to back, a replica's 5th
# failed start within 120 s makes the supervisor give it up, as it should a crash loop.
KILLS = int(os.environ.get("CHUTEBOX_MIGRATION_KILLS", "2"))


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[OtlpReceiver, str]]:
    collector = OtlpReceiver()
    with serve_in_thread(collector) as url:
        yield collector, url + "/v1/traces"


@pytest.fixture(scope="module")
def gateway(
    tiny_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    receiver: tuple[OtlpReceiver, str],
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("replicas")
    config = folder / "chutes.toml"
    config.write_text(
        f'[[chutes]]\nname = "tiny"\nmodel = {json.dumps(str(tiny_model))}\nreplicas = 2\n'
        "routing_kv_events = true\n"
        # A stream whose engine is killed may wait for its restart (a slow one on 2 cores).
        "migration_wait = 300\n"
        # float32: a stream moved by SIGKILL is recomputed on another replica (prefill, not
        # decode); in bfloat16 the random model's near-ties flipped 2 of 8 such streams at
        # the same token (12 of 12 equal in float32).
        'engine_args = "--dtype float32 --max-model-len 2048 --enforce-eager '
        '--enable-prompt-tokens-details"\n'
    )
    args = ["--config", str(config), "--api-key", API_KEY, "--otlp-endpoint", receiver[1]]
    env = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    with chutebox_serve(args, folder / "chutebox.log", ready_timeout=600, env=env) as served:
        yield served


def test_both_replicas_serve_on_their_own_core(gateway: Served) -> None:
    replicas = wait_replicas_ready(gateway.base_url, "tiny")
    assert [r["state"] for r in replicas] == ["ready", "ready"]
    log = gateway.log_text()
    binds = re.findall(r"\[tiny/(\d)\].*local_rank=0, core ids=\[(\d+)\]", log)
    assert sorted(set(binds)) == [("0", "0"), ("1", "1")], binds

    def ask(i: int) -> int:
        body = {"model": "tiny", "prompt": f"request {i}", "max_tokens": 16}
        reply = httpx.post(gateway.base_url + "/v1/completions", json=body, timeout=120,
                           headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
        return reply.status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, range(8))) == [200] * 8
    log = gateway.log_text()
    for replica in ("0", "1"):
        assert re.search(rf"\[tiny/{replica}\].*POST /v1/completions HTTP/1.1\" 200", log)


def test_a_shared_prompt_prefix_is_served_from_the_engines_cache(gateway: Served) -> None:
    """The engine's own count of cached prompt tokens says the follow-ups of a document went
    where its KV cache was (by load alone, the second of each pair would go to the other,
    idle replica and find nothing cached)."""
    wait_replicas_ready(gateway.base_url, "tiny")
    words = " ".join(CORPUS).split()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    cached: dict[int, list[int]] = {}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=120) as client:
        for question in range(3):
            for doc in range(3):
                text = f"Document {doc}: " + " ".join(
                    words[(doc + i) % len(words)] for i in range(250)
                )
                body = {"model": "tiny", "prompt": f"{text}\nQuestion {question}:", "max_tokens": 2}
                reply = client.post("/v1/completions", json=body)
                assert reply.status_code == 200, reply.text
                details = reply.json()["usage"].get("prompt_tokens_details") or {}
                cached.setdefault(doc, []).append(details.get("cached_tokens") or 0)
        routing = client.get("/status").json()["chutes"][0]["routing"]
    for doc, counts in cached.items():
        assert counts[0] == 0 and all(c > 0 for c in counts[1:]), (doc, counts)
    assert routing["policy"] == "prefix" and routing["affinity_hits"] >= 6
    # The engines published what they cached, and the router matched follow-ups there. Each
    # follow-up's /tokenize call has 0.1 s (runtime/fleet/routing/exact.py); on a loaded machine one
    # can miss it (seen once in CI: 5 of 6) and that request goes by the text index, which the
    # affinity count above covers; timing is not this test's to assert.
    assert all(count > 0 for count in routing["engine_blocks"].values()), routing
    assert 1 <= routing["exact_hits"] <= routing["affinity_hits"], routing


def states(served: Served) -> list[dict[str, object]]:
    return list(httpx.get(served.base_url + "/ready").json()["chutes"]["tiny"]["replicas"])


def test_killing_one_replica_loses_no_request(gateway: Served) -> None:
    wait_replicas_ready(gateway.base_url, "tiny")
    victim = engine_pids(gateway)[0]
    replies: list[int] = []
    stop = threading.Event()

    def probe() -> None:
        body = {"model": "tiny", "prompt": "probe", "max_tokens": 4}
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as client:
            while not stop.is_set():
                replies.append(client.post("/v1/completions", json=body).status_code)
                time.sleep(0.05)

    def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 120
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        until(lambda: len(replies) >= 5, "the first replies")
        os.kill(victim, signal.SIGKILL)
        seen = len(replies)
        until(lambda: any(r["state"] != "ready" for r in states(gateway)), "the kill to be seen")
        # Requests sent while one replica is down: all go to the other one.
        until(lambda: len(replies) >= seen + 40, "forty requests during the outage")
    finally:
        stop.set()
        prober.join(60)
    assert set(replies) == {200}, replies
    # The killed replica comes back (without load: on 2 cores, vLLM puts the restarting
    # engine's scheduler on the other replica's core, where a busy one can starve it).
    back = wait_replicas_ready(gateway.base_url, "tiny", timeout=600)
    assert [r["state"] for r in back] == ["ready", "ready"]


def replica_engines(served: Served) -> dict[int, int]:
    """Each replica's engine process (its latest start), by replica index."""
    sockets = dict(re.findall(r"\[tiny/(\d)\] starting engine: .* --uds (\S+)", served.log_text()))
    found = {}
    for pid in engine_pids(served):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        for index, socket in sockets.items():
            if socket.encode() in cmdline:
                found[int(index)] = pid
    return found


def test_a_stream_whose_engine_is_killed_goes_on_at_another_replica_as_one_stream(
    gateway: Served,
) -> None:
    """SIGKILL of the engine serving a stream, some time into it: the client's stream goes
    on at the other replica, or (the second time, the other one still restarting) waits for
    the restarted one; at temperature 0 it is the answer uninterrupted.

    On 2 cores a tiny model's stream can end before a kill lands (the engines starve each
    other, and it may come in one burst): a kill after the last token moved nothing, and
    that trial is not counted (each one's access line says whether it moved)."""
    wait_replicas_ready(gateway.base_url, "tiny", timeout=600)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "the mill by the river"}],
        "max_tokens": 1500,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
    }

    def replicas() -> list[dict[str, Any]]:
        status = httpx.get(gateway.base_url + "/status", headers=headers).json()
        return list(status["chutes"][0]["replicas"])

    def kill_when_serving(
        after: float, armed: threading.Event, done: threading.Event, killed: list[tuple[int, int]]
    ) -> None:
        """Kill the engine the stream went to, `after` seconds after the gateway took it:
        the only ready one (known before the stream: on 2 cores a /status call made during
        a vLLM stream can wait most of a second), or the one the gateway counts it on."""
        now = replicas()
        engines = replica_engines(gateway)
        ready = [r for r in now if r["state"] == "ready"]
        victim = ready if len(ready) == 1 else []
        armed.set()
        while not victim and not done.is_set():
            victim = [r for r in replicas() if r["outstanding"]]
        if victim and victim[0]["index"] in engines and not done.wait(after):
            os.killpg(engines[victim[0]["index"]], signal.SIGKILL)  # API server, engine core
            killed.append((victim[0]["index"], victim[0]["restarts"]))

    def settled(killed: list[tuple[int, int]]) -> bool:
        """The kill was seen (the replica is down, or back after a restart), and some replica
        can take the next stream."""
        now = {r["index"]: r for r in replicas()}
        seen = all(now[i]["state"] != "ready" or now[i]["restarts"] > n for i, n in killed)
        return seen and any(r["state"] == "ready" for r in now.values())

    def read(kill_after: float | None) -> tuple[str, int, str]:
        text, tokens = "", 0
        armed, done, killed = threading.Event(), threading.Event(), list[tuple[int, int]]()
        killer = threading.Thread(target=kill_when_serving, args=(kill_after, armed, done, killed))
        if kill_after is not None:
            killer.start()
            assert armed.wait(60)
        with httpx.stream(
            "POST",
            gateway.base_url + "/v1/chat/completions",
            json=body,
            headers=headers,
            timeout=600,
        ) as reply:
            assert reply.status_code == 200
            for line in reply.iter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                assert "error" not in event, event
                for choice in event["choices"]:
                    text += choice["delta"].get("content") or ""
                tokens = (event.get("usage") or {}).get("completion_tokens", tokens)
        done.set()
        if kill_after is not None:
            killer.join(30)
            assert eventually(lambda: settled(killed), timeout=300), replicas()
        return text, tokens, reply.headers["x-chutes-invocationid"]

    def access_line(invocation: str) -> str:
        lines = eventually(
            lambda: [
                ln
                for ln in gateway.log_text().splitlines()
                if f"id={invocation}" in ln and "chutebox.access" in ln
            ]
        )
        return str(lines[-1])

    whole = read(None)
    assert whole[1] == 1500
    moved, equal, tries = 0, 0, 0
    while moved < KILLS and tries < 3 * KILLS:
        text, tokens, invocation = read([0.1, 0.3, 0.6, 1.0, 1.5][tries % 5])
        tries += 1
        assert tokens == whole[1]
        if "migrated=1" in access_line(invocation):
            moved += 1
            equal += text == whole[0]
        else:
            assert text == whole[0]  # not moved: the engine was killed after its last token
    assert moved == KILLS and equal >= KILLS - KILLS // 20, (moved, equal, tries)
    metrics = httpx.get(gateway.base_url + "/metrics").text
    assert f'chutebox_request_migrations_total{{chute="tiny"}} {KILLS}.0' in metrics
    back = wait_replicas_ready(gateway.base_url, "tiny", timeout=600)
    assert [r["state"] for r in back] == ["ready", "ready"]


def test_a_requests_trace_holds_the_gateways_span_and_vllms_as_its_child(
    gateway: Served, receiver: tuple[OtlpReceiver, str]
) -> None:
    """The client's trace is continued by the gateway's span, and vLLM's own `llm_request`
    span (the engine started with --otlp-traces-endpoint) is that span's child."""
    collector = receiver[0]
    wait_replicas_ready(gateway.base_url, "tiny", timeout=600)
    trace, parent = secrets.token_hex(16), secrets.token_hex(8)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "trace me"}], "max_tokens": 8}
    reply = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=body,
        timeout=120,
        headers={"Authorization": f"Bearer {API_KEY}", "traceparent": f"00-{trace}-{parent}-01"},
    )
    assert reply.status_code == 200, reply.text

    def spans() -> tuple[list[ReceivedSpan], list[ReceivedSpan]]:
        ours = [s for s in collector.named("chutebox") if s.trace_id == trace]
        theirs = [s for s in collector.named("vllm") if s.trace_id == trace]
        return ours, theirs

    ours, theirs = eventually(lambda: all(spans()) and spans(), timeout=60) or spans()
    assert len(ours) == 1 and len(theirs) == 1, (ours, theirs, collector.spans[-5:])
    span, engine = ours[0], theirs[0]
    assert span.name == "chat tiny" and span.parent_span_id == parent
    assert engine.name == "llm_request" and engine.parent_span_id == span.span_id
    usage = reply.json()["usage"]
    assert span.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert span.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert span.attributes["gen_ai.response.id"] == reply.json()["id"]
    assert engine.attributes["gen_ai.usage.prompt_tokens"] == usage["prompt_tokens"]
