"""The gateway stays light: importing it loads no engine library."""

import ast
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "vllm", "sglang", "diffusers", "sentence_transformers", "transformers")


def test_runtime_imports_no_engine_library() -> None:
    code = (
        "import sys, runtime.cli, runtime.serve, runtime.api.app, engines.vllm, engines.fake; "
        f"print([m for m in sys.modules if m.split('.')[0] in {HEAVY!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_gateway_never_imports_the_engines() -> None:
    """engines depend on runtime (the backend contract, errors, wire models); runtime loads
    them by import string only (runtime/fleet/registry.py), so there is no import cycle."""
    root = Path(__file__).resolve().parents[2]
    offenders = [str(path.relative_to(root)) for path in sorted((root / "runtime").rglob("*.py"))
                 if "engines" in imported_roots(path)]  # fmt: skip
    assert offenders == []
    contract = imported_roots(root / "runtime" / "fleet" / "backend.py")
    assert not contract & {"runtime", "engines", "starlette"}
    assert not imported_roots(root / "runtime" / "errors.py") & {"engines", "starlette"}
