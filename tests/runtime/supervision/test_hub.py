"""Downloading a pinned hub snapshot with the real huggingface_hub, from a local fake hub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.supervision.hub import HubAccess, download
from tests.support.fake_hub import FakeHub
from tests.support.uvicorn_thread import serve_in_thread

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {"config.json": b'{"model_type": "llama"}', "weights/model.bin": b"\x00\x01" * 1000}


@pytest.fixture
def hub() -> Iterator[tuple[FakeHub, str]]:
    fake = FakeHub("org/tiny", COMMIT, FILES)
    with serve_in_thread(fake.app()) as base_url:
        yield fake, base_url


def test_download_fetches_every_file_once_then_uses_the_cache(
    hub: tuple[FakeHub, str], tmp_path: Path
) -> None:
    fake, base_url = hub
    access = HubAccess(endpoint=base_url, cache_dir=tmp_path / "hub", token=None)
    folder = download("org/tiny", COMMIT, access)
    assert folder.is_dir() and COMMIT in str(folder)
    assert {p: (folder / p).read_bytes() for p in FILES} == FILES
    assert sorted(fake.downloads) == sorted(FILES)
    assert download("org/tiny", COMMIT, access) == folder
    assert len(fake.downloads) == len(FILES)


def test_unknown_repo_fails(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    _, base_url = hub
    access = HubAccess(endpoint=base_url, cache_dir=tmp_path / "hub", token=None)
    with pytest.raises(Exception, match="(?i)not found|404"):
        download("org/missing", COMMIT, access)
