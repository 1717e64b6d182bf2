"""Engines chutebox does not start: a vLLM, an SGLang, another chutebox, the leader of a
multi-node group, reached at the `url`s of a chute.

Such a chute gets what a local one gets (auth, admission, fields read from the engine,
rewrites, metrics, routing over its replicas, cancellation); only the supervision differs.
Nothing is spawned: each replica is probed on its readiness route with its key, READY while it
answers and lists the chute's model, UNREACHABLE with the reason while it does not (requests
then go to the others, or get 503 with Retry-After when none is left), and back as soon as a
probe answers. A bad address or a down engine at boot leaves that chute not ready with its
reason, and the gateway serves its other chutes. Keys come from an environment variable or a
file, never from the config itself: a config is often shared, a key must not be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ConfigError

log = logging.getLogger("chutebox.supervisor")


def read_key(env_name: str | None, path: Path | None, environ: Mapping[str, str]) -> str:
    """The remote engine's key, read once at startup; "" when it takes none."""
    if env_name is not None:
        key = environ.get(env_name, "").strip()
        if not key:
            raise ConfigError(f"api_key_env: the environment variable {env_name} is not set "
                              "or empty")  # fmt: skip
        return key
    if path is not None:
        try:
            lines = path.expanduser().read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"api_key_path: cannot read {path}: {exc.strerror}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise ConfigError(f"api_key_path: {path} holds no key on its first line")
        return key
    return ""


@dataclass(frozen=True)
class Answer:
    """One probe of a remote engine: whether it serves the chute, and why not."""

    ok: bool
    reason: str = ""


Probe = Callable[[], Awaitable[Answer]]


@dataclass(frozen=True)
class FollowTimes:
    """How often a remote replica is probed: while it answers, and (doubling up to the
    first) while it does not."""

    answering: float = 10.0
    silent: float = 1.0


async def follow(
    probe: Probe,
    wake: asyncio.Event,
    times: FollowTimes,
    on_answer: Callable[[], Awaitable[None]],
    on_silence: Callable[[str], None],
) -> None:
    """Probe forever: `on_answer` each time it answers, `on_silence(reason)` each time it
    does not. `wake` (a request found it refusing connections) probes at once."""
    misses = 0
    while True:
        answer = await probe()
        if answer.ok:
            misses = 0
            await on_answer()
            delay = times.answering
        else:
            misses += 1
            on_silence(answer.reason)
            delay = min(times.answering, times.silent * 2 ** min(misses - 1, 10))
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), delay)
        except TimeoutError:
            pass
