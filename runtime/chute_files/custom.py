"""Custom chutes (their own cords and hooks): described by the chute's own interpreter.

The gateway never imports a custom chute's code: the file may need torch, a GPU, or packages
that only the chute's interpreter has. `engines/cord_runner.py describe`, run there, reports
what the gateway routes by.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from runtime.errors import ConfigError
from runtime.fleet.backend import PACKAGE_ROOT
from runtime.fleet.cords import ChuteCode

SHIM = Path(__file__).resolve().parent / "shim"

# The SDK's template builders: a chute file that calls one is a template chute.
TEMPLATE_BUILDERS = ("build_vllm_chute", "build_sglang_chute", "build_embedding_chute",
                     "build_diffusion_chute")  # fmt: skip
SDK_IMPORT = re.compile(r"^\s*(?:from|import)\s+chutes\b", re.MULTILINE)
DESCRIBE_TIMEOUT = 300.0  # importing a chute's dependencies (torch…) can take a while


def chute_file(module_name: str) -> Path:
    """The file of `module:attr`: relative to the folder run in, as the SDK's runner finds
    it, else wherever Python would import the module from (PYTHONPATH)."""
    here = Path.cwd() / f"{module_name.replace('.', '/')}.py"
    if here.is_file():
        return here
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin)
    return here


def is_template_file(path: Path) -> bool:
    return any(builder in path.read_text(errors="replace") for builder in TEMPLATE_BUILDERS)


def is_custom_chute_file(path: Path) -> bool:
    """A file that uses the Chutes SDK and calls none of its template builders."""
    if not path.is_file() or is_template_file(path):
        return False
    return SDK_IMPORT.search(path.read_text(errors="replace")) is not None


def describe(
    path: Path, attr: str, python: str | None = None, *, stand_in: bool = False
) -> ChuteCode:
    """What the chute in `path` defines, asked of `python` (chutebox's own by default).
    `stand_in`: where that interpreter lacks the SDK, read the file with chutebox's stand-in
    for it (enough to render the chute's image; serving it needs the real SDK)."""
    try:
        return _describe(path, attr, python)
    except SdkMissing:
        if not stand_in:
            raise
        return _describe(path, attr, python, shim=SHIM)


class SdkMissing(ConfigError):
    """The interpreter asked cannot import the Chutes SDK."""


def _describe(path: Path, attr: str, python: str | None, shim: Path | None = None) -> ChuteCode:
    interpreter = python or sys.executable
    where = f"{path.stem}:{attr}"
    arguments = ["describe", str(path.resolve()), attr]
    if shim is None:
        command = [interpreter, "-m", "engines.cord_runner", *arguments]
    else:  # the stand-in first on the path, then the runner as `-m` would run it
        code = (f"import sys; sys.path.insert(0, {str(shim)!r}); "
                f"from engines.cord_runner import main; main({arguments!r})")  # fmt: skip
        command = [interpreter, "-c", code]
    try:
        # From chutebox's folder: `-m` finds the runner there, nothing installed.
        result = subprocess.run(command, capture_output=True, text=True, cwd=PACKAGE_ROOT,
                                timeout=DESCRIBE_TIMEOUT)  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"chute file {where}: python {interpreter!r} cannot be run: "
                          f"{exc.strerror}") from None  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ConfigError(f"chute file {where}: importing it took over "
                          f"{DESCRIBE_TIMEOUT:.0f}s") from None  # fmt: skip
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
        if "No module named 'chutes'" in result.stderr:
            raise SdkMissing(f"chute file {where}: {interpreter} lacks the Chutes SDK: pip "
                             "install chutes there, or name an interpreter that has it "
                             "(`python` in the chute's entry, --python on the command "
                             "line)")  # fmt: skip
        raise ConfigError(f"chute file {where}: {detail[0]}")
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ConfigError(f"chute file {where}: no description came back") from None
    return ChuteCode.from_description(data, where)
