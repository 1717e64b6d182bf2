"""Fetching a hub model before its engine starts; the engine itself then runs offline.

huggingface_hub is imported lazily: a gateway serving local folders never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HubAccess:
    """Where to download from and cache to; read from settings, never from the environment."""

    endpoint: str | None
    cache_dir: Path
    token: str | None


def download(repo_id: str, revision: str, access: HubAccess) -> Path:
    """Download (or find in the cache) a pinned snapshot; returns its local folder.

    Blocking: call it in a thread. Progress bars come from huggingface_hub itself.
    """
    from huggingface_hub import snapshot_download

    folder = snapshot_download(
        repo_id=repo_id,
        revision=revision,
        cache_dir=access.cache_dir,
        endpoint=access.endpoint,
        token=access.token or False,
    )
    return Path(str(folder))
