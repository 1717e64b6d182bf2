"""Python bytecodes per relayed request, counted: chutebox against the minimal relay.

    python bench/bytecodes.py [--top 30] [--seconds 3] [--calls]

Each server (bench/relay.py, bench/floor.py) runs under this script's `--serve` mode, which
counts every bytecode the process runs (`sys.settrace` with opcode events) between two
signals, while `wrk` sends chat requests at concurrency 8 to it in front of the fake
upstream. The count is divided by the requests the server parsed in that time. Unlike
timings, which vary by ±10% on a shared machine, the count is the same from run to run:
it shows whether a change to the relay path added or removed Python work, and where that
work is (the functions with the most bytecodes per request). `--calls` counts Python calls
instead (a function called, or a coroutine resumed: each one a frame to set up, which costs
more than most bytecodes). It says nothing of C code's time (pydantic, orjson, system
calls): read it beside bench/proxy.py's `--profile`.
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The request parser's callback that runs once per request, in uvicorn's server and in
# chutebox's (the engine client's parser has a callback of the same name: not counted).
PER_REQUEST = "on_headers_complete"
SERVERS = ("httptools_impl.py", "connections.py")


def serve(script: str, out: Path, argv: list[str], event_counted: str = "opcode") -> None:
    """Run `script` as the server, counting `event_counted` (opcode or call) per function from
    SIGUSR1 to SIGUSR2 (which writes `out`)."""
    counts: Counter[CodeType] = Counter()
    requests = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal requests
        frame.f_trace_opcodes = True
        if event == event_counted:
            counts[frame.f_code] += 1
        if event == "call" and frame.f_code.co_name == PER_REQUEST:
            requests += frame.f_code.co_filename.endswith(SERVERS)
        return tracer

    def start(*_: object) -> None:
        nonlocal requests
        counts.clear()
        requests = 0
        sys.settrace(tracer)

    def stop(*_: object) -> None:
        sys.settrace(None)
        lines = [f"{requests}"]
        for code, count in counts.most_common():
            where = f"{Path(code.co_filename).name}:{code.co_firstlineno} {code.co_qualname}"
            lines.append(f"{count} {where}")
        out.write_text("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name="__main__")


def count(
    name: str, script: str, upstream: str, seconds: float, calls: bool = False
) -> tuple[int, Counter[str]]:
    """(requests counted, bytecodes or calls by function) for one server under wrk."""
    from bench.proxy import CHAT, KEY, RESULTS, start, wrk
    from tests.support.servers import free_port, stop_group

    port = free_port()
    out = RESULTS / f"bytecodes-{name.replace(' ', '-')}.txt"
    argv = [sys.executable, __file__, "--serve", script, "--out", str(out),
            *(["--calls"] if calls else []), "--",
            "--port", str(port), "--upstream", upstream]  # fmt: skip
    server = start(f"bytecodes-{name}", argv, port, f"Bearer {KEY}", "/ready")
    try:
        wrk(server, 8, 1, CHAT)  # warm: connections, caches
        os.kill(server.proc.pid, signal.SIGUSR1)
        wrk(server, 8, seconds, CHAT)
        os.kill(server.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not out.exists() or not out.read_text().endswith("\n"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no count written")
            time.sleep(0.1)
    finally:
        stop_group(server.proc)
    first, *rest = out.read_text().splitlines()
    functions: Counter[str] = Counter()
    for line in rest:
        number, _, where = line.partition(" ")
        functions[where] += int(number)
    out.unlink()
    return int(first), functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=30, help="functions listed per server")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--calls", action="store_true", help="count Python calls, not bytecodes")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve:
        event = "call" if args.calls else "opcode"
        serve(args.serve, Path(args.out), [a for a in rest if a != "--"], event)
        return
    from bench.proxy import fake_upstream
    from tests.support.servers import stop_group

    upstream = fake_upstream("bytecodes-upstream", cpu="0")
    try:
        totals = {}
        for name, script in (("minimal relay", "bench/floor.py"), ("chutebox", "bench/relay.py")):
            requests, functions = count(name, script, upstream.base_url, args.seconds, args.calls)
            totals[name] = sum(functions.values()) / max(requests, 1)
            what = "calls" if args.calls else "bytecodes"
            print(f"\n{name}: {totals[name]:,.0f} {what} per request ({requests} requests)")
            for where, number in functions.most_common(args.top):
                print(f"  {number / max(requests, 1):8.1f}  {where}")
        print(f"\nchutebox / minimal relay: {totals['chutebox'] / totals['minimal relay']:.2f}x")
    finally:
        stop_group(upstream.proc)


if __name__ == "__main__":
    main()
