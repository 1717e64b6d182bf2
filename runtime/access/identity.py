"""A caller as the gateway knows it once its key is read: a name and what it may do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.config.keys import ANY_CHUTE

# The caller of a gateway run without keys (--no-auth): unlimited, metered under this name.
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identity:
    """A key's name, the chutes it may call (None: all), its per-minute limits and its daily
    quotas by chute name or `"*"` (the pool of every chute without its own)."""

    name: str
    chutes: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    quotas: Mapping[str, int] = field(default_factory=dict)

    def may_call(self, chute: str) -> bool:
        return self.chutes is None or chute in self.chutes

    def quota(self, chute: str) -> tuple[str, int] | None:
        """The pool a call of `chute` counts against (the chute, or `"*"`) and its daily
        quota; None when unlimited."""
        if chute in self.quotas:
            return chute, self.quotas[chute]
        if ANY_CHUTE in self.quotas:
            return ANY_CHUTE, self.quotas[ANY_CHUTE]
        return None

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None


UNLIMITED = Identity(ANONYMOUS)
