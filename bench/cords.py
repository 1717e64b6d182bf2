"""What chutebox adds to a custom chute's cord call, measured beside the SDK's own runner.

    python bench/cords.py [--calls 400] [--rounds 5]

The tests' toolbox chute (tests/support/chutes/toolbox.py) under the Chutes SDK in
`.venv-chutes`, two ways: `chutes run toolbox:chute --dev` (the SDK's runner: hypercorn on a
port, no key, no limit) and `chutebox serve toolbox:chute` (the SDK's cord handlers in
chutebox's runner on a private socket, behind the gateway: key, admission, ids, metrics,
access log). Sequential calls at concurrency 1 to the JSON cord `/echo` and to `/square`
(image bytes), alternating rounds between the two so that both see the same machine; median
and p99 latency per round, and the median of the rounds' medians. Writes
bench/results/cords.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import free_port, stop_group, wait_for  # noqa: E402

SDK = ROOT / ".venv-chutes" / "bin"
CHUTES = ROOT / "tests" / "support" / "chutes"
RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"
CALLS = {"echo": {"text": "hello", "times": 2}, "square": {"frequency": 300}}


def start_sdk(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CHUTES_EXECUTION_CONTEXT": "REMOTE"}
    argv = [str(SDK / "chutes"), "run", "toolbox:chute", "--dev", "--host", "127.0.0.1",
            "--port", str(port), "--logging-port", str(free_port())]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=CHUTES, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(base + "/info", 120, proc)
    return proc, base


def start_chutebox(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [str(ROOT / ".venv" / "bin" / "chutebox"), "serve", "toolbox:chute", "--python",
            str(SDK / "python"), "--port", str(port), "--api-key", KEY]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=CHUTES, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(base + "/ready", 120, proc)
    return proc, base + "/chutes/toolbox"


def round_of(client: httpx.Client, url: str, body: object, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        reply = client.post(url, json=body)
        times.append(time.perf_counter() - started)
        assert reply.status_code == 200, reply.text
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    sdk, sdk_base = start_sdk(RESULTS / "cords-sdk.log")
    ours, our_base = start_chutebox(RESULTS / "cords-chutebox.log")
    rows: dict[str, dict[str, list[float]]] = {}
    try:
        with (httpx.Client() as plain,
              httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as keyed):  # fmt: skip
            for cord, body in CALLS.items():
                for client, base in ((plain, sdk_base), (keyed, our_base)):
                    round_of(client, f"{base}/{cord}", body, 50)  # warm-up
                for _ in range(args.rounds):
                    for name, client, base in (("chutes run --dev", plain, sdk_base),
                                               ("chutebox", keyed, our_base)):  # fmt: skip
                        times = round_of(client, f"{base}/{cord}", body, args.calls)
                        entry = rows.setdefault(cord, {}).setdefault(name, [])
                        entry.append(statistics.median(times) * 1000)
                        entry.append(sorted(times)[int(len(times) * 0.99)] * 1000)
    finally:
        stop_group(sdk)
        stop_group(ours)
    report: dict[str, object] = {"calls": args.calls, "rounds": args.rounds, "cords": {}}
    print(f"\n{args.rounds} rounds of {args.calls} sequential calls each, medians of rounds\n")
    print("| cord | runner | p50 (ms) | p99 (ms) |\n|---|---|---|---|")
    for cord, by_runner in rows.items():
        summary = {}
        for name, values in by_runner.items():
            p50 = statistics.median(values[0::2])
            p99 = statistics.median(values[1::2])
            summary[name] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}
            print(f"| /{cord} | {name} | {p50:.2f} | {p99:.2f} |")
        added = summary["chutebox"]["p50_ms"] - summary["chutes run --dev"]["p50_ms"]
        summary["added_p50_ms"] = round(added, 3)
        report["cords"][cord] = summary  # type: ignore[index]
    for cord, summary in report["cords"].items():  # type: ignore[attr-defined]
        print(f"\n/{cord}: chutebox adds {summary['added_p50_ms']:+.2f} ms at p50")
    (RESULTS / "cords.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS / 'cords.json'}")


if __name__ == "__main__":
    main()
