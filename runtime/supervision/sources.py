"""Where a chute's model comes from, and turning that into a folder its engine can load.

Three sources: a local model folder (used as is), a local `.gguf` file (converted once into a
safetensors folder under the cache directory, by `engines/gguf_convert.py` running in the
engine's own interpreter), and a hub id at a pinned revision (downloaded before the engine starts).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runtime.config.settings import ChuteSettings
from runtime.errors import ConfigError
from runtime.supervision import hub
from runtime.supervision.process import ChildProcess

log = logging.getLogger("chutebox.sources")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
CONVERTER = Path(__file__).resolve().parents[2] / "engines" / "gguf_convert.py"
DONE_MARKER = ".chutebox-complete"


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["folder", "file", "gguf", "hub"]
    location: str
    revision: str | None = None


def resolve_source(
    chute: ChuteSettings, file_suffixes: frozenset[str] = frozenset()
) -> ModelSource:
    """Classify `chute.model`; refuse what cannot be served, before anything starts.

    `file_suffixes` are single-file checkpoints the chute's engine loads itself.
    """
    path = Path(chute.model).expanduser()
    if path.is_dir():
        return ModelSource("folder", str(path.resolve()))
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".gguf":
            return ModelSource("gguf", str(path.resolve()))
        if suffix in file_suffixes:
            return ModelSource("file", str(path.resolve()))
        accepted = ", ".join(sorted({".gguf", *file_suffixes}))
        raise ConfigError(
            f"model {chute.model!r} is a file this engine cannot load ({accepted} are); "
            "give a model folder, such a file, or a hub id"
        )
    if not _HUB_ID.match(chute.model) or chute.model.startswith((".", "/", "~")):
        raise ConfigError(f"model {chute.model!r}: no such file or folder, and not a hub id")
    if chute.revision is None:
        raise ConfigError(
            f"model {chute.model!r} is a hub id and needs a pinned revision "
            "(--revision <40-hex commit>), as on Chutes"
        )
    return ModelSource("hub", chute.model, chute.revision)


def gguf_cache_folder(gguf: Path, cache_dir: Path) -> Path:
    """A folder named for the file and its identity (path, size, mtime): edits invalidate it."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_dir / "gguf" / f"{gguf.stem}-{key[:16]}"


async def prepare(
    source: ModelSource,
    *,
    cache_dir: Path,
    python: str,
    env: Mapping[str, str],
    access: hub.HubAccess,
    label: str,
) -> Path:
    """Return a local folder holding the model, preparing it if needed."""
    if source.kind in ("folder", "file"):
        return Path(source.location)
    if source.kind == "hub":
        assert source.revision is not None
        log.info("[%s] fetching %s@%s", label, source.location, source.revision[:12])
        return await asyncio.to_thread(hub.download, source.location, source.revision, access)
    return await convert_gguf(Path(source.location), cache_dir, python, env, label)


async def convert_gguf(
    gguf: Path, cache_dir: Path, python: str, env: Mapping[str, str], label: str
) -> Path:
    target = gguf_cache_folder(gguf, cache_dir)
    if (target / DONE_MARKER).exists():
        log.info("[%s] using the prepared model in %s", label, target)
        return target
    log.info("[%s] preparing %s once (GGUF → safetensors) into %s", label, gguf.name, target)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    child = ChildProcess(f"{label}:prepare")
    await child.start([python, str(CONVERTER), str(gguf), str(staging)], env)
    try:
        code = await child.wait()
    finally:
        await child.stop()
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"converting {gguf} failed (exit {code}):\n{child.last_lines()}")
    (staging / DONE_MARKER).touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
