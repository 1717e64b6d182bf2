import os
from pathlib import Path

import pytest

from runtime.config.settings import ChuteSettings
from runtime.errors import ConfigError
from runtime.supervision.sources import ModelSource, gguf_cache_folder, resolve_source

SHA = "b" * 40


def test_local_folder_and_gguf_file(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_source(ChuteSettings(model=str(tmp_path))) == ModelSource(
        "folder", str(tmp_path)
    )
    assert resolve_source(ChuteSettings(model=str(gguf))).kind == "gguf"


def test_hub_id_needs_a_pinned_revision() -> None:
    assert resolve_source(ChuteSettings(model="org/name", revision=SHA)) == ModelSource(
        "hub", "org/name", SHA
    )
    with pytest.raises(ConfigError, match="pinned revision"):
        resolve_source(ChuteSettings(model="org/name"))


@pytest.mark.parametrize("model", ["./missing", "/no/such/folder", "not a hub id"])
def test_missing_paths_are_refused(model: str) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        resolve_source(ChuteSettings(model=model, revision=SHA))


def test_other_files_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ConfigError, match="cannot load"):
        resolve_source(ChuteSettings(model=str(weights)))
    checkpoint = tmp_path / "sd.safetensors"
    checkpoint.write_bytes(b"x")
    source = resolve_source(ChuteSettings(model=str(checkpoint)), frozenset({".safetensors"}))
    assert source.kind == "file"


def test_gguf_cache_folder_follows_the_file(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    first = gguf_cache_folder(gguf, tmp_path / "cache")
    assert first == gguf_cache_folder(gguf, tmp_path / "cache")
    assert first.name.startswith("m-")
    os.utime(gguf, ns=(1, 1))
    assert gguf_cache_folder(gguf, tmp_path / "cache") != first
