"""The gateway stays light: importing it loads no engine library."""

import subprocess
import sys

HEAVY = ("torch", "vllm", "sglang", "diffusers", "sentence_transformers", "transformers")


def test_runtime_imports_no_engine_library() -> None:
    code = (
        "import sys, runtime.cli, runtime.server, runtime.app, engines.vllm, engines.fake; "
        f"print([m for m in sys.modules if m.split('.')[0] in {HEAVY!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
