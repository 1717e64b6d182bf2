"""Named API keys: who may call which chute, how fast, and how often a day.

A `[[keys]]` entry in the config file, or in a `keys_file` holding only such tables (re-read
while the gateway runs), describes one key. The secret is the key itself or its SHA-256 (so
a keys file need not hold secrets). Quotas count invocations per UTC day, as Chutes does: a
chute's own quota counts that chute; `"*"` is one daily pool shared by every chute without a
quota of its own.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from runtime.errors import ConfigError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ANY_CHUTE = "*"


class KeySettings(BaseModel):
    """One named key and its limits (none given: unlimited)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="shown in logs, metrics and usage instead of the key")
    key: SecretStr | None = Field(None, description="the key itself")
    key_sha256: str | None = Field(None, description="the key's SHA-256, hex (instead of key)")
    chutes: tuple[str, ...] | None = Field(None, description="chutes it may call (default: all)")
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens (prompt + output) per minute")
    quotas: dict[str, int] = Field(
        default_factory=dict,
        description='invocations per UTC day, by chute name, or "*" for the others together',
    )

    @model_validator(mode="after")
    def _check(self) -> KeySettings:
        if not _NAME.match(self.name):
            raise ValueError(
                f"name {self.name!r}: letters, digits and . _ @ - only, at most 64 characters"
            )
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError(f"key {self.name!r}: give `key` or `key_sha256`, one of them")
        if self.key is not None and not self.key.get_secret_value().strip():
            raise ValueError(f"key {self.name!r}: `key` must not be empty")
        if self.key_sha256 is not None and not _SHA256.match(self.key_sha256):
            raise ValueError(f"key {self.name!r}: key_sha256 must be 64 lower-case hex digits")
        for chute, quota in self.quotas.items():
            if quota < 0:
                raise ValueError(f"key {self.name!r}: quotas.{chute} must be 0 or more")
        return self


def check_keys(keys: Collection[KeySettings], chutes: Collection[str]) -> None:
    """Names unique, and every chute a key names is served (ConfigError otherwise)."""
    names = [k.name for k in keys]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"two keys share the name {twice[0]!r}")
    for key in keys:
        named = [*(key.chutes or ()), *(c for c in key.quotas if c != ANY_CHUTE)]
        unknown = sorted(set(named) - set(chutes))
        if unknown:
            raise ConfigError(
                f"key {key.name!r} names {', '.join(unknown)}, not a chute served here "
                f"({', '.join(sorted(chutes))})"
            )


def parse_keys(entries: Any, where: str) -> tuple[KeySettings, ...]:
    """`[[keys]]` tables as settings; ConfigError naming the entry and field at fault."""
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: `keys` must be a list of tables ([[keys]])")
    keys = []
    for index, entry in enumerate(entries):
        try:
            keys.append(KeySettings.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            at = f"keys[{index}]" + (f".{field}" if field else "")
            raise ConfigError(f"{where}: {at}: {first['msg']}") from exc
    return tuple(keys)


def read_keys_file(path: Path, chutes: Collection[str]) -> tuple[KeySettings, ...]:
    """The keys a keys file holds (TOML `[[keys]]`, or YAML/JSON `keys:`), checked."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read keys_file {path}: {exc.strerror}") from exc
    try:
        if path.suffix in (".yaml", ".yml", ".json"):
            data: Any = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"keys_file {path} does not parse: {exc}") from exc
    if not isinstance(data, Mapping) or set(data) - {"keys"}:
        raise ConfigError(f"keys_file {path}: only [[keys]] tables belong here")
    keys = parse_keys(data.get("keys", []), f"keys_file {path}")
    check_keys(keys, chutes)
    return keys
