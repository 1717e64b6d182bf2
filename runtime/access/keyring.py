"""The keys a gateway accepts, each to an identity; a keys file's re-read while it runs.

A key is looked up by its SHA-256: the keys file may hold only digests, and a dictionary
lookup on a digest tells a timing observer nothing about any key (they would have to find a
preimage). Keys never leave this module: logs, metrics and `/status` see names.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Collection, Iterable
from pathlib import Path

from runtime.access.identity import Identity
from runtime.config.keys import KeySettings, check_keys, read_keys_file
from runtime.errors import ConfigError

log = logging.getLogger("chutebox.keys")
# How often the keys file's stat is compared with the last one read.
POLL_SECONDS = 1.0


def digest(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


def identity_of(key: KeySettings) -> Identity:
    return Identity(
        name=key.name,
        chutes=frozenset(key.chutes) if key.chutes is not None else None,
        rpm=key.rpm,
        tpm=key.tpm,
        quotas=dict(key.quotas),
    )


def _digest_of(key: KeySettings) -> str:
    if key.key is not None:
        return digest(key.key.get_secret_value().encode())
    assert key.key_sha256 is not None
    return key.key_sha256


class KeyRing:
    """Plain keys (unlimited, named `api-key-N`), named keys from the config, and the keys
    file's, which `reload` replaces as a whole or not at all."""

    def __init__(
        self,
        plain: Iterable[str] = (),
        named: Collection[KeySettings] = (),
        keys_file: Path | None = None,
        chutes: Collection[str] = (),
    ) -> None:
        self.keys_file = keys_file
        self.chutes = tuple(chutes)
        self._fixed: dict[str, Identity] = {}
        for index, key in enumerate(plain, 1):
            self._fixed[digest(key.encode())] = Identity(f"api-key-{index}")
        self._named = tuple(named)
        for entry in named:
            self._fixed[_digest_of(entry)] = identity_of(entry)
        self._filed: dict[str, Identity] = {}
        self._seen: tuple[int, int, int] | None = None
        if keys_file is not None and not self.reload():
            raise ConfigError(f"keys_file {keys_file} could not be read (logged above)")

    def __len__(self) -> int:
        return len(self._fixed) + len(self._filed)

    def identify(self, offered: Iterable[bytes]) -> Identity | None:
        """The identity of the first configured key among those offered."""
        for key in offered:
            found = self._filed.get(digest(key)) or self._fixed.get(digest(key))
            if found is not None:
                return found
        return None

    def identities(self) -> list[Identity]:
        return [*self._fixed.values(), *self._filed.values()]

    def reload(self) -> bool:
        """Read the keys file again; a file that does not parse or check keeps the keys from
        before (and says why in the log)."""
        if self.keys_file is None:
            return True
        self._seen = _stat(self.keys_file)
        try:
            keys = read_keys_file(self.keys_file, self.chutes)
            check_keys([*self._named, *keys], self.chutes)
        except ConfigError as exc:
            log.error("%s; keeping the %d keys read before", exc, len(self._filed))
            return False
        filed = {_digest_of(k): identity_of(k) for k in keys}
        if len(filed) < len(keys):
            log.error(
                "keys_file %s: two entries hold the same key; keeping the keys read before",
                self.keys_file,
            )
            return False
        names = ", ".join(i.name for i in filed.values())
        log.info("keys_file %s: %d keys (%s)", self.keys_file, len(filed), names)
        self._filed = filed
        return True

    def changed(self) -> bool:
        return self.keys_file is not None and _stat(self.keys_file) != self._seen

    async def watch(self, interval: float = POLL_SECONDS) -> None:
        """Re-read the keys file whenever it changes, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            if self.changed():
                self.reload()


def _stat(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)
