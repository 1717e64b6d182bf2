"""Two relays head to head at c=64: alternating 2 s runs, the rate ratio per adjacent pair.

    python bench/ab.py "before=python /tmp/old/bench/relay.py" "after=python bench/relay.py"
        [--rounds 13] [--seconds 2] [--streams]

Each command gets `--port`, `--upstream`, `--upstream-key none` and `--model bench` added
(bench/relay.py's arguments; a worktree of another commit runs its own copy) and serves in
front of one fake upstream (bench/upstream.py), both on core 1 and `wrk` on core 0, as in
bench/proxy.py. The two alternate, the order swapped each round, so drift over the minutes
falls on both alike; the median of the per-round ratios is the measure (a single run here
varies by ±10%), with each one's median CPU per request beside it. `--streams` measures,
instead, each one's time to first byte of 40 streams per round, burst and paced, as
bench/proxy.py does.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy import CHAT, KEY, Server, fake_upstream, start, streams, wrk  # noqa: E402
from tests.support.servers import free_port, stop_group  # noqa: E402


def relay(name: str, command: str, upstream: str) -> Server:
    port = free_port()
    argv = [*shlex.split(command), "--port", str(port), "--upstream", upstream,
            "--upstream-key", "none", "--model", "bench"]  # fmt: skip
    return start(name, argv, port, f"Bearer {KEY}", "/ready", bench="ab")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("relays", nargs=2, metavar="NAME=COMMAND")
    parser.add_argument("--rounds", type=int, default=13)
    parser.add_argument("--seconds", type=float, default=2)
    parser.add_argument("--streams", action="store_true", help="time to first byte instead")
    args = parser.parse_args()
    upstream = fake_upstream("ab-upstream")
    servers: list[Server] = []
    try:
        for item in args.relays:
            name, _, command = item.partition("=")
            servers.append(relay(name, command, upstream.base_url))
        a, b = servers
        if args.streams:
            for _ in range(args.rounds):
                for server in servers:
                    run = streams(server, 40)
                    print(f"  {server.name}: first byte {run['ttfb_ms']:.2f} ms burst, "
                          f"{run['paced_ttfb_ms']:.2f} ms paced")  # fmt: skip
            return
        ratios: list[float] = []
        cpu: dict[str, list[float]] = {a.name: [], b.name: []}
        for i in range(args.rounds):
            runs = {s.name: wrk(s, 64, args.seconds, CHAT) for s in ((a, b) if i % 2 else (b, a))}
            ratios.append(runs[b.name]["rps"] / runs[a.name]["rps"])
            for name, run in runs.items():
                cpu[name].append(run["cpu_ms_per_request"] * 1000)
        print(f"{b.name} / {a.name} at c=64: median {statistics.median(ratios):.3f} "
              f"({' '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip
        for name, values in cpu.items():
            print(f"  {name}: {statistics.median(values):.1f} µs CPU per request (median)")
    finally:
        for server in [*servers, upstream]:
            stop_group(server.proc)


if __name__ == "__main__":
    main()
