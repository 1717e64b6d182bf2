"""Where a relay's CPU goes: py-spy's collapsed stacks grouped by what the code is for.

    python bench/breakdown.py PROFILE.txt [CPU_US_PER_REQUEST]

Each sample goes to the innermost frame that belongs to a group below (a sample inside the
engine client called from the reply relay counts for the engine client), or to the event
loop when only the loop's own frame is there (uvloop's C code: polling, socket reads, task
steps, callbacks). System calls count for the Python code that made them: a `write` shows
as the function that wrote. bench/proxy.py `--profile` records the minimal relay and
chutebox this way and prints both side by side, in µs per request.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (group, function-name prefixes), checked in order for each frame.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("access log", ("AccessLog.", "AccessEntry.", "LocalQueueHandler.", "Logger.",
                    "JsonFormatter.")),
    ("metrics, traffic, Server-Timing", ("Metrics.", "Tally.", "Traffic.", "_Ring.",
                                         "Observer.", "server_timing ")),
    ("API key check", ("KeyCheck.", "presented_keys ", "key_matches ")),
    ("request: read, parse, validate", ("read_body ", "parse_body ", "validate ", "loads ",
                                        "BaseModel.", "check_limits ", "screen_fields ")),
    ("route, rewrite, admit", ("forward ", "admit ", "Lease.", "Chute.", "ChuteSet.",
                               "Admission.", "rewrite_request ", "split_thinking ", "_call ",
                               "RoutingPolicy.", "Router.", "open_gateway ",
                               "require_capability ", "Operation.", "EngineFields.")),
    ("engine client (runtime/http/engine_client.py)", ("Upstream.", "_Connection.",
                                                        "UpstreamResponse.", "_Pool.")),
    ("reply relay, usage", ("EngineCall.", "run_until_disconnect ", "find_usage ", "_flat ",
                            "_read ", "StreamRelay.")),
    ("request record, middleware, ids", ("RequestRecord.", "record_of ", "stamps ", "Forward.",
                                         "ObserveMiddleware.", "InvocationMiddleware.",
                                         "AuthMiddleware.", "Starlette.", "Router.",
                                         "Route.", "ExceptionMiddleware.",
                                         "ServerErrorMiddleware.", "relay.<locals>.app ")),
    ("HTTP server: request and reply", ("RequestResponseCycle.", "FlowControl.")),
    ("HTTP server: parsing, connection", ("GuardedHttpProtocol.", "HttpToolsProtocol.",
                                          "ProxyHeadersMiddleware.", "_Sweeper.",
                                          "ServerState.")),
]  # fmt: skip
LOOP = "event loop (uvloop: polling, reads, task steps)"
OTHER = "other"


def group_of(frame: str) -> str | None:
    for group, prefixes in GROUPS:
        if frame.startswith(prefixes):
            return group
    return None


def breakdown(path: Path) -> dict[str, float]:
    """Each group's share of the samples (0–1)."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        found = next((g for f in reversed(frames) if (g := group_of(f)) is not None), None)
        if found is None:
            found = LOOP if frames[-1].startswith("Runner.run ") else OTHER
        counts[found] += int(n)
    total = sum(counts.values()) or 1
    return {group: count / total for group, count in counts.most_common()}


def table(columns: dict[str, tuple[dict[str, float], float]]) -> str:
    """Groups as rows, one column per profiled server: µs per request (share × its CPU)."""
    names = list(columns)
    groups = [g for g, _ in GROUPS] + [LOOP, OTHER]
    lines = ["| | " + " | ".join(f"{n} (µs)" for n in names) + " |",
             "|---|" + "---|" * len(names)]  # fmt: skip
    for group in groups:
        cells = [columns[n][0].get(group, 0.0) * columns[n][1] for n in names]
        if any(cell >= 0.05 for cell in cells):
            lines.append(f"| {group} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    totals = " | ".join(f"{columns[n][1]:.1f}" for n in names)
    lines.append(f"| **CPU per request** | {totals} |")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1])
    cpu = float(sys.argv[2]) if len(sys.argv) > 2 else 100.0
    print(table({path.stem: (breakdown(path), cpu)}))


if __name__ == "__main__":
    main()
