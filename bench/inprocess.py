"""CPU per request of the gateway's ASGI app alone, driven in-process: no HTTP server between.

    python bench/inprocess.py [--requests 300] [--rounds 40] [--set FIELD=VALUE …] [--profile]

The fake upstream (bench/upstream.py) runs under uvicorn on core 1; this process, on core 0,
calls the app as chutebox's server would (one request at a time: scope, body, reply; the
server's disconnect extension offered) and measures its own CPU per request, best of
`--rounds` short rounds (on a shared machine the best of many short rounds is the stable
number; a few long ones each catch some noise): first for the minimal relay of
bench/floor.py, then for chutebox's app as bench/relay.py builds it (auth, admission,
validation, usage, metrics, access log on; `--set access_log=false` and the like for
ablations). The HTTP server's share is left out, so the difference is what the gateway's
own path costs. `--profile` prints cProfile's top functions for chutebox (their times
inflated by the profiler).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.floor import relay  # noqa: E402
from runtime.api.app import create_app  # noqa: E402
from runtime.config.settings import ChuteSettings, Settings  # noqa: E402
from runtime.fleet.admission import Admission  # noqa: E402
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Replica  # noqa: E402
from runtime.fleet.registry import load_backend  # noqa: E402
from runtime.http.engine_client import Endpoint  # noqa: E402
from runtime.observability.logs import configure_logging  # noqa: E402
from tests.support.servers import free_port, stop_group, wait_for  # noqa: E402

KEY = "bench-key"
BODY = json.dumps({"model": "bench", "max_tokens": 16, "messages": [
    {"role": "user", "content": "What is the capital of France?"}]}).encode()  # fmt: skip
HEADERS = [(b"host", b"bench"), (b"authorization", f"Bearer {KEY}".encode()),
           (b"content-type", b"application/json"),
           (b"content-length", str(len(BODY)).encode())]  # fmt: skip


def chutebox_app(upstream: str, overrides: dict[str, str]) -> Any:
    settings = ChuteSettings(model=str(ROOT), name="bench", engine="vllm", concurrency=256)
    replica = Replica(0, state=ChuteState.READY, endpoint=Endpoint(upstream, "none"))
    chute = Chute(settings=settings, backend=load_backend("vllm"), admission=Admission(256),
                  replicas=[replica], phase=ChuteState.STARTING)  # fmt: skip
    gateway = Settings.model_validate({"chutes": (), **overrides})
    return create_app(gateway, ChuteSet([chute]), api_keys=(KEY,))


async def drive(app: Any, requests: int, rounds: int, profile: cProfile.Profile | None) -> float:
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    lifespan = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    await outbox.get()

    async def one() -> None:
        done = asyncio.Event()
        sent: list[dict[str, Any]] = []
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": BODY, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                 "headers": HEADERS, "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 8000), "state": dict(state)}  # fmt: skip
        await app(scope, receive, send)
        done.set()
        assert sent[0]["status"] == 200, sent

    for _ in range(300):  # warm: connections, caches
        await one()
    best = float("inf")
    for _ in range(rounds):
        if profile is not None:
            profile.enable()
        started = time.process_time()
        for _ in range(requests):
            await one()
        best = min(best, (time.process_time() - started) / requests)
        if profile is not None:
            profile.disable()
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    port = free_port()
    argv = ["taskset", "-c", "1", sys.executable, "-m", "uvicorn", "bench.upstream:app",
            "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning"]  # fmt: skip
    upstream = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/health", 30, upstream)
        floor = uvloop.run(drive(relay(url), args.requests, args.rounds, None))
        # The access log as `chutebox serve` writes it, into nothing.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
        configure_logging("info", "text")
        profile = cProfile.Profile() if args.profile else None
        overrides = dict(item.split("=", 1) for item in args.set)
        app = chutebox_app(url, overrides)
        chutebox = uvloop.run(drive(app, args.requests, args.rounds, profile))
        print(f"minimal relay  {floor:6.1f} µs CPU per request")
        print(f"chutebox       {chutebox:6.1f} µs CPU per request  (+{chutebox - floor:.1f})"
              + (f"  with {' '.join(args.set)}" if args.set else ""))  # fmt: skip
        if profile is not None:
            pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(30)
    finally:
        stop_group(upstream)


if __name__ == "__main__":
    main()
