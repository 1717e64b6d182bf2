"""Two chutes taking turns on one box: the cost of a switch, loaded on demand, beside the same
two chutes always loaded.

    python bench/switching.py [--every 4] [--switches 4] [--max-tokens 16]

Two chutes on the tests' tiny Llama (vLLM's CPU build), `left` and `right`. Requests alternate
between them every `--every` requests (sequential, streamed, `--max-tokens` each) for
`--switches` switches, through `chutebox serve` twice: with both chutes `load = "on-demand"`
and `max_loaded = 1` (each switch stops one engine and starts the other: vLLM's sleep mode is
GPU-only), and with both always loaded (they fit here). Reported: time to first token of the
first request after each switch and of the others (p50), and requests per second over the
whole run. Writes bench/results/switching.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import chutebox_serve  # noqa: E402
from tests.support.tiny_llama import build_tiny_llama  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"
ENGINE_ARGS = "--dtype float32 --max-model-len 512 --enforce-eager"


def config(folder: Path, model: Path, on_demand: bool) -> Path:
    text = "max_loaded = 1\n" if on_demand else ""
    for name in ("left", "right"):
        text += f'\n[[chutes]]\nname = "{name}"\nmodel = {json.dumps(str(model))}\n'
        text += f'engine_args = "{ENGINE_ARGS}"\n'
        if on_demand:
            text += 'load = "on-demand"\nkeep_alive = "-1"\n'
    path = folder / ("on-demand.toml" if on_demand else "always.toml")
    path.write_text(text)
    return path


def ttft(client: httpx.Client, model: str, max_tokens: int) -> float:
    """Seconds from sending a streamed chat request to its first content event."""
    ask = [{"role": "user", "content": "Tell me a story."}]
    body = {"model": model, "messages": ask, "max_tokens": max_tokens, "stream": True}
    began = time.perf_counter()
    first = None
    with client.stream("POST", "/v1/chat/completions", json=body) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"{model}: HTTP {reply.status_code} {reply.read()[:300]!r}")
        for line in reply.iter_lines():
            if first is None and line.startswith("data: {") and '"content":"' in line:
                first = time.perf_counter() - began
    return first if first is not None else time.perf_counter() - began


def run(base: str, every: int, switches: int, max_tokens: int) -> dict[str, float | list[float]]:
    after_switch, others = [], []
    began = time.perf_counter()
    requests = 0
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        for block in range(switches + 1):
            model = ("left", "right")[block % 2]
            for i in range(every):
                seconds = ttft(client, model, max_tokens)
                requests += 1
                (after_switch if i == 0 and block > 0 else others).append(seconds)
    elapsed = time.perf_counter() - began
    return {
        "ttft_after_switch_p50_s": statistics.median(after_switch),
        "ttft_after_switch_s": after_switch,
        "ttft_other_p50_s": statistics.median(others),
        "requests": requests,
        "elapsed_s": elapsed,
        "requests_per_s": requests / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--switches", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    rows: dict[str, dict[str, float | list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_tiny_llama(folder / "tiny-llama")
        for name, on_demand in (("always loaded", False), ("on demand, max_loaded 1", True)):
            path = config(folder, model, on_demand)
            argv = ["--config", str(path), "--api-key", KEY]
            with chutebox_serve(argv, folder / f"{on_demand}.log", ready_timeout=600) as served:
                rows[name] = run(served.base_url, args.every, args.switches, args.max_tokens)
    print(f"\n{args.switches} switches, every {args.every} requests, {args.max_tokens} tokens")
    print("| | TTFT first after a switch (p50) | TTFT others (p50) | req/s |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        first, other, rate = (
            row[k] for k in ("ttft_after_switch_p50_s", "ttft_other_p50_s", "requests_per_s")
        )
        print(f"| {name} | {first:.2f} s | {other * 1000:.0f} ms | {rate:.2f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"args": vars(args), "rows": rows}
    (RESULTS / "switching.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
