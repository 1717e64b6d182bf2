"""Starts each chute's engine, waits until it answers, watches it, restarts it, stops it.

Per chute: prepare the model (download or convert) once, then loop — launch the engine on a
free loopback port with a fresh key, poll its readiness route with that key until 200 (failing
fast with the engine's last log lines if it exits), serve, probe its health route, and on death
or repeated probe failures restart it with backoff. After `max_failures` failed starts in a row
the chute is marked failed instead of flapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.base import Device, LaunchRequest
from runtime.chutes import Chute, ChuteSet, ChuteState, Endpoint
from runtime.host import Host
from runtime.hub import HubAccess
from runtime.process import ChildProcess, free_port
from runtime.sources import prepare, resolve_source
from runtime.upstream import Upstream

log = logging.getLogger("chutebox.supervisor")

# As in the Chutes templates: engines never reach the hub at run time.
ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    "PYTHONUNBUFFERED": "1",
}


class EngineStartError(Exception):
    """The engine exited or did not become ready in time."""


@dataclass(frozen=True)
class SupervisorConfig:
    cache_dir: Path
    hub: HubAccess
    probe_interval: float = 10.0
    probe_failures: int = 5
    max_failures: int = 5
    backoff_max: float = 60.0
    stable_after: float = 120.0


def engine_device(chute: Chute, host: Host) -> Device:
    if chute.settings.device != "auto":
        return chute.settings.device
    return "cuda" if host.gpu_count else "cpu"


class Supervisor:
    """Owns every engine process; the app's lifespan starts and stops it."""

    def __init__(self, chutes: ChuteSet, host: Host, config: SupervisorConfig) -> None:
        self.chutes = chutes
        self.host = host
        self.config = config
        self._tasks: list[asyncio.Task[None]] = []
        self._engines: dict[str, ChildProcess] = {}
        self._upstream: Upstream | None = None

    async def start(self, upstream: Upstream) -> None:
        self._upstream = upstream
        for chute in self.chutes:
            self._tasks.append(asyncio.create_task(self._run(chute), name=f"chute:{chute.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(e.stop() for e in self._engines.values()))
        for chute in self.chutes:
            chute.state, chute.endpoint = ChuteState.STOPPED, None

    async def _run(self, chute: Chute) -> None:
        python = chute.settings.python or sys.executable
        try:
            chute.state = ChuteState.PREPARING
            model_path = await prepare(
                resolve_source(chute.settings, chute.backend.single_file_suffixes),
                cache_dir=self.config.cache_dir,
                python=python,
                env={**self.host.environ, **chute.settings.env},
                access=self.config.hub,
                label=chute.name,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(chute, f"preparing the model failed: {exc}")
            return
        failures = 0
        while True:
            chute.state = ChuteState.STARTING if failures == 0 else ChuteState.RESTARTING
            started = time.monotonic()
            reason = await self._serve_once(chute, model_path, python)
            if time.monotonic() - started > self.config.stable_after:
                failures = 0
            failures += 1
            if failures >= self.config.max_failures:
                self._fail(chute, f"gave up after {failures} failed starts: {reason}")
                return
            delay = min(self.config.backoff_max, 2.0 ** (failures - 1))
            chute.state, chute.detail = ChuteState.RESTARTING, f"restarting: {reason}"
            log.warning("[%s] %s; restarting in %.0fs", chute.name, reason, delay)
            await asyncio.sleep(delay)

    def _fail(self, chute: Chute, detail: str) -> None:
        chute.state, chute.endpoint, chute.detail = ChuteState.FAILED, None, detail
        log.error("[%s] %s", chute.name, detail)

    async def _serve_once(self, chute: Chute, model_path: Path, python: str) -> str:
        """Run one engine life; returns why it ended."""
        key = secrets.token_urlsafe(24)
        port = free_port()
        request = LaunchRequest(
            model_path=str(model_path),
            served_name=chute.name,
            port=port,
            api_key=key,
            python=python,
            device=engine_device(chute, self.host),
            engine_args=tuple(split_args(chute.settings.engine_args)),
            gpu_count=self.host.gpu_count,
            cpu_ids=self.host.cpu_ids,
            cache_dir=str(self.config.cache_dir),
        )
        spec = chute.backend.launch(request)
        env = {**self.host.environ, **ENGINE_ENV, **spec.env, **chute.settings.env}
        engine = ChildProcess(chute.name)
        self._engines[chute.name] = engine
        endpoint = Endpoint(f"http://127.0.0.1:{port}", key)
        log.info("[%s] starting engine: %s", chute.name, " ".join(redact(spec.argv, key)))
        try:
            await engine.start(spec.argv, env)
            chute.card = await self._wait_ready(chute, engine, endpoint)
            chute.endpoint, chute.state, chute.detail = endpoint, ChuteState.READY, ""
            log.info("[%s] ready on %s", chute.name, endpoint.base_url)
            return await self._watch(chute, engine, endpoint)
        except EngineStartError as exc:
            return str(exc)
        finally:
            chute.endpoint = None
            await engine.stop()

    async def _get(self, endpoint: Endpoint, path: str) -> tuple[int, Any]:
        assert self._upstream is not None
        try:
            response = await asyncio.wait_for(
                self._upstream.send(endpoint, "GET", path), timeout=10
            )
            async with response:
                is_json = response.content_type == "application/json"
                return response.status, (await response.json() if is_json else None)
        except (TimeoutError, Exception):
            return 0, None

    async def _wait_ready(
        self, chute: Chute, engine: ChildProcess, endpoint: Endpoint
    ) -> dict[str, Any]:
        deadline = time.monotonic() + chute.settings.startup_timeout
        while time.monotonic() < deadline:
            if engine.returncode is not None:
                await engine.wait()
                raise EngineStartError(
                    f"engine exited with code {engine.returncode} before it was ready; "
                    f"its last lines:\n{engine.last_lines()}"
                )
            status, body = await self._get(endpoint, chute.backend.ready_path)
            if status == 200:
                return card_for(chute.name, body)
            await asyncio.sleep(1.0)
        raise EngineStartError(
            f"engine not ready after {chute.settings.startup_timeout:.0f}s; "
            f"its last lines:\n{engine.last_lines()}"
        )

    async def _watch(self, chute: Chute, engine: ChildProcess, endpoint: Endpoint) -> str:
        exited = asyncio.ensure_future(engine.wait())
        misses = 0
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), self.config.probe_interval)
                if exited.done():
                    return f"engine exited with code {exited.result()}:\n{engine.last_lines(10)}"
                status, _ = await self._get(endpoint, chute.backend.health_path)
                misses = 0 if status == 200 else misses + 1
                if misses >= self.config.probe_failures:
                    return f"engine failed {misses} health probes in a row"
        finally:
            exited.cancel()


def card_for(name: str, listing: Any) -> dict[str, Any]:
    """The engine's model card for `name` out of its `/v1/models` reply."""
    if isinstance(listing, dict):
        for entry in listing.get("data", []):
            if isinstance(entry, dict) and entry.get("id") == name:
                return entry
    return {}


def split_args(args: str) -> list[str]:
    return shlex.split(args)


def redact(argv: tuple[str, ...], secret: str) -> list[str]:
    return ["***" if a == secret else a for a in argv]
