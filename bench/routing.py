"""Routing across two replicas: least-outstanding, chutebox's prefix affinity and vllm-router.

    python bench/routing.py [--docs 16] [--questions 5] [--concurrency 6] [--distinct 32]

Two vLLM-CPU replicas of one model, each pinned to its own core, each with a KV cache sized
to hold about half of the workload's distinct prefixes. In front of the same two engines, in
turn: chutebox's gateway (`bench/relay.py`: the app `chutebox serve` builds, auth, admission,
validation, metrics and the access log on) with `routing = "least-outstanding"`, with
`routing = "prefix"` matching approximately (prompt text), and with `routing = "prefix"`
following the engines' KV-cache events (both engines publish them, as `chutebox serve` asks
vLLM to; only this row reads them), and vllm-router 0.1.17 (`.venv-vllm-router`) with
`--policy cache_aware` and `--policy round_robin`, its other settings as shipped.

Two workloads, both streamed at a fixed concurrency: shared prefixes (`--docs` documents of
about 1,000 tokens as the system message, `--questions` questions each, in a shuffled order)
and all-distinct prompts of the same size. Both engines' prefix caches are emptied
(`/reset_prefix_cache`) before each row, so every row sees the same cold start.

Columns: time to first token (the first SSE event, at the client) p50/p99, requests/s, the
engines' own prefix-cache hit rate (`vllm:prefix_cache_hits` / `queries`, summed over both),
the largest share of requests one replica took (the engines' own request counts), and the
router's CPU per request (its process, from /proc). Then the router's own cost in-process:
CPU per routed request with 10,000 prefixes tracked. Prints the table and the targets,
writes bench/results/routing.json.

The model is a random-weights Llama (hidden 512, 6 layers) with the test suite's tokenizer:
wide enough that computing a 1,000-token prompt (~215 ms on one core here) costs several
times what reading it from the cache does (~47 ms to the first token).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers import vllm_router_argv  # noqa: E402
from bench.proxy import Server, cpu_seconds, start  # noqa: E402
from tests.support.servers import free_port, stop_group  # noqa: E402
from tests.support.tiny_llama import CORPUS, build_tiny_llama  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"
MODEL = "bench"
HIDDEN, LAYERS = 512, 6
WORDS = " ".join(CORPUS).split()
DOC_WORDS = 700  # about 1,000 tokens with the test tokenizer
ROUTE_METRIC = re.compile(
    r"^chutebox_route_(affinity_hits|exact_hits|spills)_total\{[^}]*\} (\S+)$", re.M
)
METRIC = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)$", re.M)


def engine(model: Path, core: int, kv_bytes: int, events: str) -> Server:
    port = free_port()
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": events}
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        MODEL,
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        str(kv_bytes),
        "--kv-events-config",
        json.dumps(config),
    ]
    # Dev mode serves /reset_prefix_cache, which empties the cache between rows.
    env = {"VLLM_CPU_OMP_THREADS_BIND": str(core), "VLLM_SERVER_DEV_MODE": "1"}
    return start(f"engine{core}", argv, port, "", "/health", env, 600, str(core), "routing")


def chutebox(
    name: str,
    upstreams: list[str],
    routing: str,
    events: tuple[str, ...] | list[str] = (),
    cpu: str | None = None,
) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "bench/relay.py",
        "--port",
        str(port),
        "--model",
        MODEL,
        "--routing",
        routing,
    ]
    for url in upstreams:
        argv += ["--upstream", url]
    for endpoint in events:
        argv += ["--kv-events", endpoint]
    return start(name, argv, port, f"Bearer {KEY}", "/ready", None, 600, cpu, "routing")


def vllm_router(name: str, upstreams: list[str], policy: str) -> Server | None:
    port = free_port()
    argv = vllm_router_argv(port, policy, upstreams)
    if argv is None:
        return None
    return start(name, argv, port, "", "/health", None, 600, None, "routing")


def kv_bytes_per_token(model: Path) -> int:
    """K and V, two bytes each (bf16), per layer and KV head, from the model's config."""
    config = json.loads((model / "config.json").read_text())
    per_head = config["head_dim"] * config["num_key_value_heads"]
    return 2 * 2 * config["num_hidden_layers"] * per_head


def documents(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"Document {seed}-{n}. " + " ".join(rng.choice(WORDS) for _ in range(DOC_WORDS))
        for n in range(count)
    ]


def shared_workload(docs: int, questions: int) -> list[tuple[str, str]]:
    pairs = [
        (doc, f"Question {q}: what does it say about item {q}?")
        for doc in documents(docs, 1)
        for q in range(questions)
    ]
    random.Random(2).shuffle(pairs)
    return pairs


def distinct_workload(count: int) -> list[tuple[str, str]]:
    return [(doc, "What does it say?") for doc in documents(count, 3)]


async def one(session: aiohttp.ClientSession, router: Server, system: str, question: str) -> float:
    body = {
        "model": MODEL,
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
    }
    headers = {"Authorization": router.auth} if router.auth else {}
    started = time.perf_counter()
    first = 0.0
    async with session.post(
        router.base_url + "/v1/chat/completions", json=body, headers=headers
    ) as reply:
        if reply.status != 200:
            raise RuntimeError(f"{router.name}: {reply.status} {await reply.text()}")
        async for line in reply.content:
            if not first and line.startswith(b"data:"):
                first = time.perf_counter() - started
    return first


async def drive(router: Server, work: list[tuple[str, str]], concurrency: int) -> list[float]:
    queue = list(reversed(work))
    ttfts: list[float] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            system, question = queue.pop()
            ttfts.append(await one(session, router, system, question))

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return ttfts


def engine_counts(engines: list[Server]) -> list[dict[str, float]]:
    counts = []
    for proc in engines:
        totals: dict[str, float] = {}
        for name, value in METRIC.findall(httpx.get(proc.base_url + "/metrics").text):
            totals[name] = totals.get(name, 0.0) + float(value)
        counts.append(totals)
    return counts


def reset(engines: list[Server]) -> None:
    """Empty both prefix caches. vLLM publishes the AllBlocksCleared event at its next
    step, so each engine gets a request shorter than a block (nothing to cache) to send it
    before the row starts."""
    for proc in engines:
        reply = httpx.post(proc.base_url + "/reset_prefix_cache", timeout=30)
        reply.raise_for_status()
        body = {"model": MODEL, "prompt": "hi", "max_tokens": 1}
        httpx.post(proc.base_url + "/v1/completions", json=body, timeout=60).raise_for_status()
    time.sleep(0.2)


def run_row(
    router: Server, engines: list[Server], work: list[tuple[str, str]], concurrency: int
) -> dict[str, Any]:
    reset(engines)
    before = engine_counts(engines)
    routed_before = chutebox_routing(router)
    cpu_before = cpu_seconds(router.proc.pid)
    started = time.perf_counter()
    ttfts = asyncio.run(drive(router, work, concurrency))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(router.proc.pid) - cpu_before
    after = engine_counts(engines)
    routed = chutebox_routing(router)

    def delta(i: int, name: str) -> float:
        return after[i].get(name, 0.0) - before[i].get(name, 0.0)

    served = [delta(i, "vllm:request_success_total") for i in range(len(engines))]
    hits = sum(delta(i, "vllm:prefix_cache_hits_total") for i in range(len(engines)))
    queries = sum(delta(i, "vllm:prefix_cache_queries_total") for i in range(len(engines)))
    ttfts.sort()
    return {
        "ttft_p50_ms": statistics.median(ttfts) * 1000,
        "ttft_p99_ms": ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))] * 1000,
        "rps": len(work) / elapsed,
        "hit_rate": hits / queries if queries else 0.0,
        "max_share": max(served) / max(sum(served), 1),
        "per_replica": served,
        "router_cpu_ms_per_request": cpu * 1000 / len(work),
        "requests": len(work),
        # chutebox's own account of its choices (absent for vllm-router).
        **{name: count - routed_before[name] for name, count in routed.items()},
    }


def chutebox_routing(router: Server) -> dict[str, float]:
    """A chutebox router's affinity hits, exact (KV-event) hits and spills, from /metrics."""
    if not router.auth:
        return {}
    text = httpx.get(router.base_url + "/metrics").text
    return {name: float(value) for name, value in ROUTE_METRIC.findall(text)}


def routing_cost(tracked: int = 10_000, runs: int = 2_000) -> dict[str, float]:
    """CPU of the router itself per request (prompt text, keys, match, choice, record), with
    `tracked` distinct ~1,000-token documents already in its index."""
    from runtime.fleet.routing.policy import Router, RoutingPolicy

    @dataclass
    class Candidate:
        index: int
        outstanding: int = 0
        waiting: int = 0
        queued_blocks: int = 0

    router = Router(RoutingPolicy.PREFIX, 64 << 20)
    ready = [Candidate(0), Candidate(1)]
    rng = random.Random(4)
    base = " ".join(rng.choice(WORDS) for _ in range(DOC_WORDS))

    def body(n: int) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "system", "content": f"Document {n}. {base}"},
                {"role": "user", "content": "What does it say?"},
            ]
        }

    for n in range(tracked):
        router.choose(ready, router.prompt(body(n), "chat", MODEL))
    bodies = [body(rng.randrange(tracked)) for _ in range(runs)]
    started = time.process_time()
    for data in bodies:
        router.choose(ready, router.prompt(data, "chat", MODEL))
    per_request = (time.process_time() - started) / runs
    return {
        "us_per_request": per_request * 1e6,
        "tracked_blocks": len(router.index),
        "tracked_prefixes": tracked,
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| router | TTFT p50 | TTFT p99 | req/s | prefix-cache hits | max share | router CPU/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['ttft_p50_ms']:.0f} ms | {row['ttft_p99_ms']:.0f} ms "
            f"| {row['rps']:.2f} | {row['hit_rate']:.0%} | {row['max_share']:.0%} "
            f"| {row['router_cpu_ms_per_request']:.2f} ms |"
        )
    return "\n".join(lines)


def targets(rows: dict[str, dict[str, Any]], cost: dict[str, float]) -> list[tuple[str, bool, str]]:
    prefix, least = rows["prefix"], rows["least-outstanding"]
    checks = [
        (
            "prefix TTFT p50 ≤ 0.5× least-outstanding",
            prefix["ttft_p50_ms"] <= 0.5 * least["ttft_p50_ms"],
            f"{prefix['ttft_p50_ms'] / least['ttft_p50_ms']:.2f}×",
        ),
        (
            "prefix req/s ≥ 1.3× least-outstanding",
            prefix["rps"] >= 1.3 * least["rps"],
            f"{prefix['rps'] / least['rps']:.2f}×",
        ),
        (
            "distinct prompts: no replica above 60%",
            rows["prefix distinct"]["max_share"] <= 0.6,
            f"{rows['prefix distinct']['max_share']:.0%}",
        ),
        (
            "routing ≤ 50 µs CPU/request with 10,000 prefixes",
            cost["us_per_request"] <= 50,
            f"{cost['us_per_request']:.1f} µs",
        ),
    ]
    peer = rows.get("vllm-router cache_aware")
    if peer is not None:
        checks.insert(
            1,
            (
                "prefix TTFT p50 ≤ vllm-router cache_aware",
                prefix["ttft_p50_ms"] <= peer["ttft_p50_ms"],
                f"{prefix['ttft_p50_ms']:.0f} vs {peer['ttft_p50_ms']:.0f} ms",
            ),
        )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--distinct", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=6)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)

    cost = routing_cost()
    print(
        f"router alone: {cost['us_per_request']:.1f} µs CPU per request with "
        f"{cost['tracked_prefixes']:,} prefixes ({cost['tracked_blocks']:,} blocks) tracked"
    )

    shared = shared_workload(args.docs, args.questions)
    distinct = distinct_workload(args.distinct)
    folder = Path(tempfile.mkdtemp(prefix="chutebox-routing-"))
    model = build_tiny_llama(folder / "model", hidden_size=HIDDEN, layers=LAYERS)
    kv_per_token = kv_bytes_per_token(model)
    doc_tokens = len(shared[0][0]) / 3.5  # characters per token of this tokenizer, measured
    kv_bytes = int(doc_tokens * (args.docs / 2 + args.concurrency / 2) * kv_per_token)
    print(
        f"{len(shared)} shared-prefix requests over {args.docs} documents, {len(distinct)} "
        f"distinct; KV cache per replica {kv_bytes >> 20} MiB (about half the documents)"
    )

    procs: list[Server] = []
    try:
        events = [f"ipc://{folder}/kv{core}.ipc" for core in (0, 1)]
        engines = [engine(model, core, kv_bytes, events[core]) for core in (0, 1)]
        procs += engines
        upstreams = [e.base_url for e in engines]
        for proc in engines:  # the first request of an engine is slow: not part of any row
            asyncio.run(drive(proc, [("warm up " * 50, "hi")], 1))
        routers: list[Server] = [
            chutebox("least-outstanding", upstreams, "least-outstanding"),
            chutebox("prefix", upstreams, "prefix"),
            chutebox("prefix + KV events", upstreams, "prefix", events),
        ]
        for policy in ("cache_aware", "round_robin"):
            peer = vllm_router(f"vllm-router {policy}", upstreams, policy)
            if peer is None:
                print("vllm-router not installed (make .venv-vllm-router/.installed); skipped")
                break
            routers.append(peer)
        procs += routers
        rows: dict[str, dict[str, Any]] = {}
        for suffix, work in (("", shared), (" distinct", distinct)):
            for router in routers:
                name = router.name + suffix
                rows[name] = run_row(router, engines, work, args.concurrency)
                print(f"{name}: {json.dumps({k: v for k, v in rows[name].items()})}", flush=True)
    finally:
        for proc in procs:
            stop_group(proc.proc)

    print("\nShared prefixes\n" + table({k: v for k, v in rows.items() if "distinct" not in k}))
    print("\nAll distinct\n" + table({k: v for k, v in rows.items() if "distinct" in k}))
    checks = targets(rows, cost)
    print()
    for label, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value}")
    document = {
        "rows": rows,
        "router_alone": cost,
        "workload": vars(args),
        "kv_cache_bytes_per_replica": kv_bytes,
        "targets": {label: ok for label, ok, _ in checks},
    }
    (RESULTS / "routing.json").write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
