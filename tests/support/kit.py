"""Running `chutebox conformance` as a user would, and reading its JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.servers import ROOT


def run_kit(tmp_path: Path, *args: str, cwd: Path = ROOT) -> tuple[int, dict[str, Any], str]:
    report = tmp_path / f"kit-{len(list(tmp_path.glob('kit-*')))}.json"
    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "conformance", *args, "--json", str(report)],
        cwd=cwd, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    data = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, data, result.stdout + result.stderr


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {f"{r['group']}/{r['name']}": r["status"] for r in report.get("results", [])}
