"""What a gateway costs: a fast upstream called directly, through chutebox, through LiteLLM.

    python bench/proxy.py [--duration 10] [--no-litellm] [--no-vllm-router] [--no-vllm]
        [--profile]

Servers run pinned to core 1 (taskset), the load generator (wrk) and this script on core 0.
One run measures, side by side (with `bench/floor.py`, a bare relay on the same server and
engine client, as the floor of what a gateway on this stack can cost): non-streaming latency
p50/p99 at concurrency 1, 32 and 64, requests/s at 64, CPU per request of each server
process, and time to first byte and total time of a 1,000-chunk stream with the gateway's CPU
per event (time to first byte twice: with the 1,000 events sent at once, and with the
upstream pausing 1 ms after the first, as an engine does before its second token). Peers:
vllm-router (the vLLM project's Rust router, round_robin) and LiteLLM's proxy. Then the real
tiny vLLM engine,
directly and through chutebox (vLLM on core 1, the gateway beside the load generator on core 0:
vLLM's CPU build keeps its own core busy). chutebox runs its real request path
(`bench/relay.py`): auth, admission, validation, routing, usage accounting, metrics and the
access log all on. Prints a table with ratios against direct, checks the budgets (chutebox's
CPU per relayed request, and the first byte of a paced stream over direct's, both from this
run), and writes bench/results/proxy.json: `{"rows": {NAME: {"cpu_per_request_ms",
"c1_p50_ms", "c64_rps", "paced_ttfb_ms", ...}}, "budgets": [...]}`. Budgets guard against
regressions; they are not targets to chase. `--profile` adds where each relay's CPU goes
(bench/breakdown.py).
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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.breakdown import breakdown  # noqa: E402
from bench.breakdown import table as breakdown_table  # noqa: E402
from bench.peers import vllm_router_argv  # noqa: E402
from tests.support.servers import free_port, stop_group, wait_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"
LITELLM_KEY = "sk-bench"
CHAT = {"model": "bench", "max_tokens": 16,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]}  # fmt: skip
LUA = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"errors\\": %d, \\"non2xx\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class Server:
    name: str
    base_url: str
    proc: subprocess.Popen[bytes]
    auth: str
    model: str = "bench"
    results: dict[str, Any] = field(default_factory=dict)


def start(name: str, argv: list[str], port: int, auth: str, health: str,
          env: dict[str, str] | None = None, timeout: float = 120,
          cpu: str | None = "1", bench: str = "proxy") -> Server:  # fmt: skip
    """Start a server (pinned to `cpu` unless None), its output in results/BENCH-NAME.log,
    and wait until `health` answers."""
    log = (RESULTS / f"{bench}-{name.replace(' ', '-')}.log").open("wb")
    pin = ["taskset", "-c", cpu] if cpu is not None else []
    proc = subprocess.Popen([*pin, *argv], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(base + health, timeout, proc)
    return Server(name, base, proc, auth)


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and all its descendants, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += (int(stats[current][11]) + int(stats[current][12])) / ticks
        todo.extend(children.get(current, []))
    return total


def wrk(server: Server, connections: int, duration: float, body: dict[str, Any]) -> dict[str, Any]:
    script = RESULTS / "proxy.lua"
    script.write_text(LUA)
    env = {**os.environ, "BENCH_BODY": json.dumps({**body, "model": server.model}),
           "BENCH_AUTH": server.auth}  # fmt: skip
    argv = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
            "-s", str(script), server.base_url + "/v1/chat/completions"]  # fmt: skip
    before = cpu_seconds(server.proc.pid)
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    cpu = cpu_seconds(server.proc.pid) - before
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["cpu_ms_per_request"] = cpu * 1000 / max(result["requests"], 1)
    return result


async def _streams(server: Server, runs: int, paced: bool = False) -> dict[str, float]:
    body = {**CHAT, "model": server.model, "stream": True}
    if paced:
        body["user"] = "paced"  # bench/upstream.py pauses after the first event
    headers = {"Authorization": server.auth}
    firsts, totals, events = [], [], 0
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(runs):
            started = time.perf_counter()
            async with session.post(server.base_url + "/v1/chat/completions", json=body) as r:
                first = None
                async for chunk in r.content.iter_any():
                    first = first or time.perf_counter()
                    events += chunk.count(b"data: ")
            totals.append(time.perf_counter() - started)
            firsts.append((first or time.perf_counter()) - started)
    return {"ttfb_ms": statistics.median(firsts) * 1000,
            "total_ms": statistics.median(totals) * 1000, "events": events / runs}  # fmt: skip


def streams(server: Server, runs: int) -> dict[str, float]:
    asyncio.run(_streams(server, 3))  # warm-up
    before = cpu_seconds(server.proc.pid)
    result = asyncio.run(_streams(server, runs))
    cpu = cpu_seconds(server.proc.pid) - before
    result["cpu_us_per_event"] = cpu * 1e6 / (runs * result["events"])
    # The same stream with the upstream pausing after its first event, as an engine does
    # before its second token. In the burst above, the upstream (on the gateway's core) can
    # hold the core for its whole 1,000 writes while the first event waits in the gateway.
    result["paced_ttfb_ms"] = asyncio.run(_streams(server, runs, paced=True))["ttfb_ms"]
    return result


def measure(server: Server, duration: float, stream_runs: int, body: dict[str, Any],
            concurrencies: tuple[int, ...] = (1, 32, 64)) -> None:  # fmt: skip
    wrk(server, 8, 2, body)  # warm-up: connections, caches, JITs of the servers' libraries
    for c in concurrencies:
        server.results[f"c{c}"] = wrk(server, c, duration, body)
        print(f"  {server.name} c={c}: {fmt_run(server.results[f'c{c}'])}", flush=True)
    if stream_runs:
        server.results["stream"] = streams(server, stream_runs)
        print(f"  {server.name} stream: {server.results['stream']}", flush=True)


def fmt_run(run: dict[str, Any]) -> str:
    return (f"{run['rps']:.0f} req/s, p50 {run['p50_us'] / 1000:.2f} ms, "
            f"p99 {run['p99_us'] / 1000:.2f} ms, {run['cpu_ms_per_request']:.3f} ms CPU/req, "
            f"{run['errors']} errors, {run['non2xx']} non-2xx")  # fmt: skip


def litellm_server(upstream: str, port: int) -> Server | None:
    binary = ROOT / ".venv-litellm-proxy" / "bin" / "litellm"
    if not binary.exists():
        print("LiteLLM proxy not installed (make .venv-litellm-proxy/.installed); skipped")
        return None
    config = RESULTS / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n"
        f"      model: openai/bench\n      api_base: {upstream}/v1\n      api_key: x\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n"
    )
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_TELEMETRY": "False"}  # fmt: skip
    argv = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]  # fmt: skip
    return start("litellm", argv, port, f"Bearer {LITELLM_KEY}", "/health/liveliness", env, 300)


def vllm_router_server(upstream: str) -> Server | None:
    """vllm-router in front of the one fake upstream; round_robin, the policy that does the
    least per request (with one worker, every policy picks it)."""
    port = free_port()
    argv = vllm_router_argv(port, "round_robin", [upstream])
    if argv is None:
        print("vllm-router not installed (make .venv-vllm-router/.installed); skipped")
        return None
    return start("vllm-router", argv, port, "Bearer none", "/health")


def relay(name: str, upstream: str, upstream_key: str, model: str, cpu: str = "1") -> Server:
    port = free_port()
    argv = [sys.executable, "bench/relay.py", "--port", str(port), "--upstream", upstream,
            "--upstream-key", upstream_key, "--model", model]  # fmt: skip
    server = start(name, argv, port, f"Bearer {KEY}", "/ready", cpu=cpu)
    server.model = model
    return server


def floor_relay(upstream: str) -> Server:
    port = free_port()
    argv = [sys.executable, "bench/floor.py", "--port", str(port), "--upstream", upstream]
    return start("minimal relay", argv, port, "Bearer none", "/ready")


def fake_upstream(name: str = "direct", cpu: str = "1") -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.upstream:app", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level",
            "warning"]  # fmt: skip
    return start(name, argv, port, "Bearer none", "/health", cpu=cpu)


def fake_upstream_on_socket() -> Server:
    """The same fake upstream on a Unix socket, as chutebox runs its engines by default."""
    path = str(Path(tempfile.mkdtemp(prefix="chutebox-bench-")) / "upstream.sock")
    argv = ["taskset", "-c", "1", sys.executable, "-m", "uvicorn", "bench.upstream:app",
            "--uds", path, "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning"]  # fmt: skip
    log = (RESULTS / "proxy-upstream-unix.log").open("wb")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    transport = httpx.HTTPTransport(uds=path)
    deadline = time.monotonic() + 60
    while True:
        try:
            with httpx.Client(transport=transport, base_url="http://upstream") as client:
                if client.get("/health").status_code == 200:
                    break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the fake upstream did not start on its socket")
        time.sleep(0.2)
    return Server("direct (unix socket)", "unix:" + path, proc, "Bearer none")


def vllm_engine(folder: Path) -> Server:
    from tests.support.tiny_llama import build_tiny_llama

    model = build_tiny_llama(folder / "tiny-llama")
    port = free_port()
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--served-model-name", "tiny", "--port", str(port), "--host", "127.0.0.1",
            "--api-key", KEY, "--dtype", "bfloat16", "--max-model-len", "512",
            "--enforce-eager", "--disable-log-stats"]  # fmt: skip
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "1"}
    server = start("vllm-direct", argv, port, f"Bearer {KEY}", "/health", env, 600)
    server.model = "tiny"
    return server


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(rows: list[Server]) -> str:
    direct = rows[0].results
    head = ("| | c=1 p50 / p99 (ms) | added c=1 p50 / p99 | c=32 p50 / p99 | c=64 req/s "
            "| vs direct | CPU/req (ms) | stream TTFB burst / paced / total (ms) "
            "| stream vs direct | CPU/event (µs) |")  # fmt: skip
    lines = [head, "|" + "---|" * 10]
    for server in rows:
        r = server.results
        c1, c32, c64 = r["c1"], r["c32"], r["c64"]
        added = ("—" if server is rows[0] else
                 f"+{(c1['p50_us'] - direct['c1']['p50_us']) / 1000:.2f} / "
                 f"+{(c1['p99_us'] - direct['c1']['p99_us']) / 1000:.2f}")  # fmt: skip
        s = r.get("stream")
        stream = (
            f"{s['ttfb_ms']:.2f} / {s['paced_ttfb_ms']:.2f} / {s['total_ms']:.1f}" if s else "—"
        )
        vs = ratio(s["total_ms"], direct["stream"]["total_ms"]) if s and "stream" in direct else "—"
        lines.append(
            f"| {server.name} | {c1['p50_us'] / 1000:.2f} / {c1['p99_us'] / 1000:.2f} | {added} "
            f"| {c32['p50_us'] / 1000:.2f} / {c32['p99_us'] / 1000:.2f} | {c64['rps']:.0f} "
            f"| {ratio(c64['rps'], direct['c64']['rps'])} | {c64['cpu_ms_per_request']:.3f} "
            f"| {stream} | {vs} | {s['cpu_us_per_event'] if s else 0:.1f} |"
        )
    return "\n".join(lines)


# Gateway CPU per relayed request at c=64, and the first byte of a paced stream over direct's.
CPU_BUDGET_MS = 0.15
FIRST_BYTE_BUDGET_MS = 0.5


def budgets(direct: Server, chutebox: Server) -> list[tuple[str, bool, str]]:
    d, c = direct.results, chutebox.results
    cpu = c["c64"]["cpu_ms_per_request"]
    added = c["stream"]["paced_ttfb_ms"] - d["stream"]["paced_ttfb_ms"]
    burst = c["stream"]["ttfb_ms"] - d["stream"]["ttfb_ms"]
    return [
        (f"gateway CPU ≤ {CPU_BUDGET_MS} ms per relayed request (c=64)", cpu <= CPU_BUDGET_MS,
         f"{cpu:.3f} ms"),
        (f"first byte ≤ {FIRST_BYTE_BUDGET_MS} ms over direct (paced stream)",
         added <= FIRST_BYTE_BUDGET_MS, f"+{added:.2f} ms (in the burst: +{burst:.2f} ms)"),
    ]  # fmt: skip


def row(server: Server) -> dict[str, Any]:
    """One server's numbers, as proxy.json's rows carry them."""
    r = server.results
    out: dict[str, Any] = {
        "cpu_per_request_ms": r["c64"]["cpu_ms_per_request"],
        "c1_p50_ms": r["c1"]["p50_us"] / 1000,
        "c1_p99_ms": r["c1"]["p99_us"] / 1000,
        "c64_rps": r["c64"]["rps"],
        "c64_p99_ms": r["c64"]["p99_us"] / 1000,
    }
    if "stream" in r:
        out |= {"paced_ttfb_ms": r["stream"]["paced_ttfb_ms"],
                "burst_ttfb_ms": r["stream"]["ttfb_ms"],
                "stream_total_ms": r["stream"]["total_ms"],
                "cpu_us_per_event": r["stream"]["cpu_us_per_event"]}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--stream-runs", type=int, default=30)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-vllm", action="store_true")
    parser.add_argument("--no-vllm-router", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the minimal relay and chutebox at c=64: where the CPU "
                             "goes")  # fmt: skip
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {0})
    servers: list[Server] = []
    report: dict[str, Any] = {"duration_s": args.duration}
    try:
        upstream = fake_upstream()
        servers.append(upstream)
        floor = floor_relay(upstream.base_url)
        servers.append(floor)
        chutebox = relay("chutebox", upstream.base_url, "none", "bench")
        servers.append(chutebox)
        socket_upstream = fake_upstream_on_socket()
        servers.append(socket_upstream)
        on_socket = relay("chutebox, engine on a Unix socket", socket_upstream.base_url, "none",
                          "bench")  # fmt: skip
        servers.append(on_socket)
        litellm = None if args.no_litellm else litellm_server(upstream.base_url, free_port())
        peer = None if args.no_vllm_router else vllm_router_server(upstream.base_url)
        peers = [p for p in (peer, litellm) if p is not None]
        servers += peers
        rows = [upstream, floor, chutebox, on_socket, *peers]
        for server in rows:
            print(f"measuring {server.name}", flush=True)
            measure(server, args.duration, args.stream_runs, CHAT)
        if args.profile:
            report["profile"] = profile(args.duration, servers)
        print("\n" + table(rows) + "\n")
        checks = budgets(upstream, chutebox)
        for name, ok, seen in checks:
            print(f"  {'within' if ok else 'OVER  '} {name}: {seen}")
        report["rows"] = {s.name: row(s) for s in rows}
        report["budgets"] = [{"budget": n, "within": ok, "seen": s} for n, ok, s in checks]
        if not args.no_vllm:
            report["vllm"] = vllm_rows(args.duration, servers)
        (RESULTS / "proxy.json").write_text(json.dumps(report, indent=2))
        print(f"\nwrote {RESULTS / 'proxy.json'}")
    finally:
        for server in servers:
            stop_group(server.proc)


def vllm_rows(duration: float, servers: list[Server]) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="chutebox-bench-vllm-"))
    print("starting vLLM (tiny Llama, CPU)", flush=True)
    engine = vllm_engine(folder)
    servers.append(engine)
    # vLLM's CPU build keeps its core busy (OpenMP workers): the gateway gets the other one,
    # with the load generator, as it would sit beside a GPU engine.
    via = relay("vllm-chutebox", engine.base_url, KEY, "tiny", cpu="0")
    servers.append(via)
    for server in (engine, via):
        print(f"measuring {server.name}", flush=True)
        measure(server, duration, 10, CHAT, concurrencies=(1, 8))
    lines = ["| | c=1 p50 / p99 (ms) | c=8 req/s | stream TTFB / total (ms) |", "|---|---|---|---|"]
    for server in (engine, via):
        r = server.results
        c1, stream = r["c1"], r["stream"]
        lines.append(f"| {server.name} | {c1['p50_us'] / 1000:.2f} / {c1['p99_us'] / 1000:.2f} "
                     f"| {r['c8']['rps']:.0f} | {stream['ttfb_ms']:.2f} / "
                     f"{stream['total_ms']:.1f} |")  # fmt: skip
    print("\n" + "\n".join(lines))
    return {s.name: s.results for s in (engine, via)}


def profile(duration: float, servers: list[Server]) -> dict[str, Any] | None:
    """Where the minimal relay's and chutebox's CPU goes at c=64, side by side (µs per
    request by bench/breakdown.py's groups). Each relay runs on core 1 with an upstream of
    its own on core 0: py-spy then samples the relay's own work, not the upstream's
    turns on the shared core."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("py-spy not installed; no profile")
        return None
    columns = {}
    for name in ("minimal relay", "chutebox"):
        upstream = fake_upstream(f"profile-upstream-{name}", cpu="0")
        servers.append(upstream)
        server = (floor_relay(upstream.base_url) if name == "minimal relay"
                  else relay("chutebox", upstream.base_url, "none", "bench"))  # fmt: skip
        servers.append(server)
        wrk(server, 64, 2, CHAT)  # warm
        out = RESULTS / f"proxy-profile-{name.replace(' ', '-')}.txt"
        argv = ["taskset", "-c", "0", spy, "record", "--pid", str(server.proc.pid), "--rate",
                "1000", "--duration", str(int(duration)), "--format", "raw", "--output",
                str(out), "--nonblocking"]  # fmt: skip
        record = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run = wrk(server, 64, duration, CHAT)
        record.wait(60)
        columns[name] = (breakdown(out), run["cpu_ms_per_request"] * 1000)
        for process in (server, upstream):
            stop_group(process.proc)
    print("\nWhere the CPU of a request goes at c=64 (py-spy; each relay alone on its core):")
    print(breakdown_table(columns))
    return {name: {"cpu_us": cpu, "shares": shares} for name, (shares, cpu) in columns.items()}


if __name__ == "__main__":
    main()
