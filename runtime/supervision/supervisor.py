"""Starts each chute's engines, waits until they answer, watches them, restarts them, stops them.

Boot: prepare every chute's model (download or convert) once, plan the GPUs from the prepared
folders' facts, then run each replica. Per replica: launch the engine with a fresh key, on a
Unix socket in a folder only chutebox's user can open (0700) where the engine can listen on
one, else on a free loopback port; poll its readiness route with that key until 200 (failing
fast with the engine's last log lines if it exits); read the request fields it publishes in
its `/openapi.json`; serve; probe its health route, and on death or repeated probe failures
restart it with backoff. An engine that exits is taken out of service the moment it exits; one
that refuses a request's connection is marked unreachable by that request and probed at once,
back in service when it answers. After `max_failures` failed starts in a row the replica is
marked failed instead of flapping. Keys travel in the environment or in files in the private
folder, never in an engine's arguments.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError
from runtime.fleet.adapters import AdapterSlots
from runtime.fleet.backend import LaunchRequest, split_args
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Replica
from runtime.fleet.routing.policy import RoutingPolicy
from runtime.http.engine_client import Endpoint, Upstream
from runtime.planner.host import Host
from runtime.protocol.fields import EngineFields
from runtime.supervision.hub import HubAccess
from runtime.supervision.launching import (
    adapter_rank,
    address_of,
    available_memory_gb,
    cpu_share,
    engine_device,
    engine_environment,
    host_memory_gb,
    private_folder,
    redact,
    remove_private_files,
    waiting_for_nodes,
    write_private_files,
)
from runtime.supervision.layout import plan_chutes, weight_bytes
from runtime.supervision.on_demand import OnDemand
from runtime.supervision.process import ChildProcess, free_port
from runtime.supervision.remote import Answer, FollowTimes, follow
from runtime.supervision.sleep import sleep_chute, wake_chute
from runtime.supervision.sources import prepare, resolve_source

log = logging.getLogger("chutebox.supervisor")


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
    # How engines that can listen on a Unix socket are reached ("unix") or not ("tcp").
    link: str = "unix"
    # Probes of a replica found unreachable come this often until it answers or is restarted.
    suspect_interval: float = 1.0
    # Where the ranks of a chute spanning nodes meet: the leader node's address.
    leader_address: str = "127.0.0.1"
    # The OTLP collector engines that trace send their spans to (empty: none).
    otlp_endpoint: str = ""
    otlp_protocol: str = "grpc"
    # Most chutes loaded at once (0: no cap; runtime.supervision.on_demand).
    max_loaded: int = 0


class Supervisor:
    """Owns every engine process; the app's lifespan starts and stops it."""

    def __init__(self, chutes: ChuteSet, host: Host, config: SupervisorConfig) -> None:
        self.chutes = chutes
        self.host = host
        self.config = config
        self._tasks: list[asyncio.Task[None]] = []
        self._engines: dict[str, ChildProcess] = {}
        self._upstream: Upstream | None = None
        self.private_dir: Path | None = None
        self._lives = 0
        # Each chute's replica tasks, and the folder its engines load (an on-demand chute's
        # are started and stopped again while the gateway runs).
        self._replica_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._prepared: dict[str, Path] = {}
        self._lora_rank: dict[str, int] = {}
        self.on_demand = OnDemand(
            chutes, config.max_loaded, self._load, self._unload, available_gb=available_memory_gb
        )

    async def start(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self.private_dir = private_folder()
        self.chutes.loader = self.on_demand.load
        self._tasks.append(asyncio.create_task(self._boot(), name="supervisor:boot"))
        self._tasks.append(asyncio.create_task(self.on_demand.keep(), name="supervisor:keep"))

    async def stop(self) -> None:
        tasks = [*self._tasks, *(t for ts in self._replica_tasks.values() for t in ts)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(e.stop(self._grace()) for e in self._engines.values()))
        for chute in self.chutes:
            chute.phase = ChuteState.STOPPED
            for replica in chute.replicas:
                replica.state, replica.endpoint = ChuteState.STOPPED, None
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)

    async def _boot(self) -> None:
        try:
            await self._plan_and_start()
        finally:
            self.on_demand.planned.set()

    async def _plan_and_start(self) -> None:
        for chute in (c for c in self.chutes if c.remote):
            self._follow_remote(chute)
        chutes = [c for c in self.chutes if not c.remote]
        folders = await asyncio.gather(*(self._prepare(c) for c in chutes))
        prepared = {c.name: f for c, f in zip(chutes, folders, strict=True) if f is not None}
        live = [c for c in chutes if c.name in prepared]
        try:
            layout = plan_chutes(live, prepared, [self.host.node])
        except ConfigError as exc:
            for chute in live:
                self._fail(chute, f"no GPU plan: {exc}")
            return
        for chute in live:
            chute_plan = layout.for_chute(chute.name)
            spans = any(len(r.placements) > 1 for r in chute_plan.replicas)
            if spans and chute.settings.nodes == 1:
                self._fail(chute, "needs several nodes; run the commands `chutebox plan` prints")
                continue
            count = len(chute_plan.replicas)
            chute.replicas = [Replica(i, plan, cpu_share(self.host.cpu_ids, i, count))
                              for i, plan in enumerate(chute_plan.replicas)]  # fmt: skip
            chute.plan_reasons = chute_plan.reasons
            for reason in chute_plan.reasons:
                log.info("[%s] plan: %s", chute.name, reason)
            self._prepared[chute.name] = prepared[chute.name]
            if chute.settings.adapters:
                try:
                    self._lora_rank[chute.name] = adapter_rank(chute.settings.adapters)
                except ConfigError as exc:
                    self._fail(chute, str(exc))
                    continue
            if chute.on_demand:
                if not chute.gpus:  # on CPU a load needs the host memory it takes
                    weights = weight_bytes(chute, prepared[chute.name])
                    chute.host_memory_gb = host_memory_gb(
                        weights, chute.backend.name, chute.settings.engine_args
                    )
                self._rest(chute)
                log.info("[%s] unloaded: loads on its first request", chute.name)
            else:
                await self._start_replicas(chute)

    async def _start_replicas(self, chute: Chute) -> None:
        """Run each of the chute's replicas (the plan made them) in its own task."""
        chute.phase, chute.detail = ChuteState.STARTING, ""
        tasks = []
        for replica in chute.replicas:
            replica.state, replica.detail = ChuteState.STARTING, ""
            task = self._run(chute, replica, self._prepared[chute.name])
            tasks.append(asyncio.create_task(task, name=f"{chute.name}/{replica.index}"))
        self._replica_tasks[chute.name] = tasks

    async def _load(self, chute: Chute) -> None:
        """An on-demand chute's load: its engines woken if they sleep, else started."""
        assert self._upstream is not None
        if chute.state is ChuteState.SLEEPING:
            if await wake_chute(self._upstream, chute):
                return
            await self._stop_replicas(chute)  # a wake that failed: start afresh
        await self._start_replicas(chute)

    async def _unload(self, chute: Chute) -> None:
        """An on-demand chute's unload: its engines put to sleep where they can, else
        stopped."""
        awake = [r for r in chute.replicas if r.state is ChuteState.READY and r.endpoint]
        if awake and len(awake) == len(chute.replicas) and all(r.sleep_mode for r in awake):
            assert self._upstream is not None
            if await sleep_chute(self._upstream, chute, awake):
                return
        await self._stop_replicas(chute)

    async def _stop_replicas(self, chute: Chute) -> None:
        """Stop the chute's engines (each replica's task ends with its engine stopped)."""
        tasks = self._replica_tasks.pop(chute.name, [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._rest(chute)

    def _rest(self, chute: Chute) -> None:
        chute.phase = ChuteState.UNLOADED
        for replica in chute.replicas:
            replica.state, replica.endpoint, replica.detail = ChuteState.UNLOADED, None, ""

    def _follow_remote(self, chute: Chute) -> None:
        chute.replicas = [Replica(i, remote=endpoint) for i, endpoint in enumerate(chute.remote)]
        chute.phase = ChuteState.STARTING
        for replica in chute.replicas:
            task = self._follow(chute, replica)
            self._tasks.append(asyncio.create_task(task, name=f"{chute.name}/{replica.index}"))

    async def _follow(self, chute: Chute, replica: Replica) -> None:
        """Probe a remote replica for as long as the gateway runs (`runtime.supervision.remote`)."""
        endpoint = replica.remote
        assert endpoint is not None
        label = f"{chute.name}/{replica.index}"

        async def answered() -> None:
            if chute.fields is None:
                chute.fields = await self._read_fields(chute, endpoint)
            if replica.state is not ChuteState.READY:
                log.info("[%s] ready: %s answers", label, endpoint.address)
            replica.endpoint, replica.state, replica.detail = endpoint, ChuteState.READY, ""

        def silent(reason: str) -> None:
            if replica.state is ChuteState.READY or not replica.detail:
                log.warning("[%s] not ready: %s", label, reason)
            replica.endpoint, replica.state, replica.detail = None, ChuteState.UNREACHABLE, reason

        times = FollowTimes(self.config.probe_interval, self.config.suspect_interval)
        await follow(lambda: self._probe_remote(chute, endpoint), replica.suspect, times,
                     answered, silent)  # fmt: skip

    async def _probe_remote(self, chute: Chute, endpoint: Endpoint) -> Answer:
        """Whether the engine at `endpoint` answers with its key and serves the chute."""
        assert self._upstream is not None
        where = endpoint.address + chute.backend.ready_path
        try:
            response = await asyncio.wait_for(
                self._upstream.send(endpoint, "GET", chute.backend.ready_path), timeout=10
            )
            async with response:
                body = await response.read()
        except TimeoutError:
            return Answer(False, f"{where}: no answer in 10s")
        except Exception as exc:  # refused, reset, unknown host: the probe failed
            return Answer(False, f"{where}: {exc}")
        if response.status in (401, 403):
            return Answer(False, f"{where} refused chutebox's key (HTTP {response.status}); "
                          "check the chute's api_key_env or api_key_path")  # fmt: skip
        if response.status != 200:
            return Answer(False, f"{where} answered HTTP {response.status}")
        try:
            listing = json.loads(body)
        except ValueError:
            return Answer(False, f"{where} did not answer JSON: is it an OpenAI-compatible server?")
        card = card_for(chute.engine_model, listing)
        if not card:
            served = ", ".join(model_ids(listing)) or "no model"
            return Answer(False, f"{where} serves {served}, not {chute.engine_model} (the "
                          "chute's `model` must be the name that engine serves)")  # fmt: skip
        chute.card = chute.card or card
        return Answer(True)

    async def _prepare(self, chute: Chute) -> Path | None:
        try:
            return await prepare_model(chute, self.host, self.config)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(chute, f"preparing the model failed: {exc}")
            return None

    def _fail(self, chute: Chute, detail: str) -> None:
        chute.phase, chute.detail = ChuteState.FAILED, detail
        log.error("[%s] %s", chute.name, detail)

    async def _run(self, chute: Chute, replica: Replica, model_path: Path) -> None:
        failures = 0
        while True:
            replica.state = ChuteState.STARTING if failures == 0 else ChuteState.RESTARTING
            started = time.monotonic()
            reason = await self._serve_once(chute, replica, model_path)
            if time.monotonic() - started > self.config.stable_after:
                failures = 0
            failures += 1
            label = f"{chute.name}/{replica.index}"
            if failures >= self.config.max_failures:
                replica.state = ChuteState.FAILED
                replica.detail = f"gave up after {failures} failed starts: {reason}"
                if chute.state is ChuteState.FAILED:
                    chute.detail = replica.detail
                log.error("[%s] %s", label, replica.detail)
                return
            delay = min(self.config.backoff_max, 2.0 ** (failures - 1))
            replica.state, replica.detail = ChuteState.RESTARTING, f"restarting: {reason}"
            replica.restarts += 1
            log.warning("[%s] %s; restarting in %.0fs", label, reason, delay)
            await asyncio.sleep(delay)

    def _launch_request(self, chute: Chute, replica: Replica, model_path: Path,
                        key: str) -> LaunchRequest:  # fmt: skip
        assert self.private_dir is not None
        self._lives += 1
        use_socket = chute.backend.unix_socket and self.config.link == "unix"
        # Short names: a socket path must fit in 107 bytes; a served name may be long.
        socket_path = str(self.private_dir / f"e{self._lives}.sock") if use_socket else ""
        return LaunchRequest(
            model_path=str(model_path),
            served_name=chute.name,
            api_key=key,
            python=chute.settings.python or sys.executable,
            device=engine_device(chute, self.host),
            port=0 if use_socket else free_port(),
            socket_path=socket_path,
            private_dir=str(self.private_dir),
            engine_args=tuple(split_args(chute.settings.engine_args)),
            tensor_parallel=replica.plan.tp,
            pipeline_parallel=replica.plan.pp,
            cpu_ids=replica.cpu_ids,
            pin_cpus=len(chute.replicas) > 1,
            custom_all_reduce=chute.settings.custom_all_reduce,
            cache_dir=str(self.config.cache_dir),
            kv_events=self._kv_events_endpoint(chute),
            nodes=replica.plan.nodes,
            master_addr=self.config.leader_address,
            master_port=chute.settings.dist_port,
            otlp_endpoint=self.config.otlp_endpoint,
            otlp_protocol=self.config.otlp_protocol,
            on_demand=chute.on_demand,
            lora_slots=chute.settings.adapter_slots if chute.settings.adapters else 0,
            lora_rank=self._lora_rank.get(chute.name, 0),
        )

    def _kv_events_endpoint(self, chute: Chute) -> str:
        """Where a replica's engine publishes KV-cache events: asked of every engine of a
        chute that routes by prefix over several replicas and follows the events (a socket
        only chutebox's user can open, one per engine life)."""
        if chute.router.policy is not RoutingPolicy.PREFIX or len(chute.replicas) < 2:
            return ""
        if not chute.settings.routing_kv_events:
            return ""
        assert self.private_dir is not None
        return f"ipc://{self.private_dir}/k{self._lives}.ipc"

    async def _serve_once(self, chute: Chute, replica: Replica, model_path: Path) -> str:
        """Run one engine life; returns why it ended."""
        # The prefix keeps the key from starting with "-", which an engine's argument parser
        # would read as a flag (1 start in 64 failed that way before).
        key = "eng-" + secrets.token_urlsafe(24)
        request = self._launch_request(chute, replica, model_path, key)
        spec = chute.backend.launch(request)
        label = f"{chute.name}/{replica.index}" if len(chute.replicas) > 1 else chute.name
        engine = ChildProcess(label)
        self._engines[f"{chute.name}/{replica.index}"] = engine
        endpoint = Endpoint(address_of(request), key)
        log.info("[%s] starting engine: %s", label, " ".join(redact(spec.argv, key)))
        try:
            write_private_files(spec)
            env = engine_environment(self.host, chute, replica.plan, 0, spec.env)
            await engine.start(spec.argv, env)
            if replica.plan.nodes > 1:
                replica.detail = waiting_for_nodes(chute, self.config.leader_address,
                                                   replica.detail)  # fmt: skip
            card = await self._wait_ready(chute, engine, endpoint)
            chute.card = chute.card or card
            if chute.fields is None and chute.code is None:  # cords are relayed as they are
                chute.fields = await self._read_fields(chute, endpoint)
            if spec.kv_events:
                chute.router.kv.watch(replica.index, spec.kv_events)
            replica.endpoint, replica.state, replica.detail = endpoint, ChuteState.READY, ""
            replica.sleep_mode, replica.slept = spec.sleep_mode, 0
            replica.adapters = AdapterSlots()  # a new engine holds none
            replica.suspect.clear()
            log.info("[%s] ready on %s", label, endpoint.address)
            return await self._watch(chute, replica, engine, endpoint)
        except EngineStartError as exc:
            return str(exc)
        finally:
            replica.endpoint = None
            chute.router.forget(replica.index)
            await engine.stop(self._grace())
            remove_private_files(spec, request.socket_path)
            if spec.kv_events:
                Path(spec.kv_events.removeprefix("ipc://")).unlink(missing_ok=True)

    def _grace(self) -> float:
        """Seconds an engine gets between SIGTERM and SIGKILL: short on a forced stop (a
        second Ctrl-C), else long enough for it to stop its own workers."""
        return 2.0 if self.chutes.stopping else 15.0

    async def _get(self, endpoint: Endpoint, path: str) -> tuple[int, Any]:
        assert self._upstream is not None
        try:
            response = await asyncio.wait_for(
                self._upstream.send(endpoint, "GET", path), timeout=10
            )
            async with response:
                body = await response.read()
                is_json = response.content_type == "application/json"
                return response.status, (json.loads(body) if is_json else None)
        except Exception:  # refused, reset, timed out, not JSON: the probe simply failed
            return 0, None

    async def _healthy(self, chute: Chute, replica: Replica, endpoint: Endpoint) -> bool:
        """The engine's health route; for a replica spanning nodes, one generated token:
        vLLM's /health checks only the leader's own engine process, and a request is what
        finds a rank on another node gone (measured: /health 200, then a request 500 and
        the engine exits, which the watch then sees)."""
        routes = chute.fields.routes if chute.fields is not None else None
        if replica.plan.nodes > 1 and routes and ("POST", "/v1/completions") in routes:
            body = json.dumps({"model": chute.engine_model, "prompt": "ping", "max_tokens": 1})
            assert self._upstream is not None
            try:
                response = await asyncio.wait_for(
                    self._upstream.send(endpoint, "POST", "/v1/completions", body.encode()), 30
                )
                async with response:
                    await response.read()
                return response.status == 200
            except Exception:  # refused, reset, timed out: the probe failed
                return False
        status, _ = await self._get(endpoint, chute.backend.health_path)
        return status == 200

    async def _check_key_required(self, chute: Chute, endpoint: Endpoint) -> None:
        """As the Chutes templates do: an engine that answers without its key is not started."""
        keyless = Endpoint(endpoint.address, api_key="")
        status, _ = await self._get(keyless, chute.backend.ready_path)
        if status == 200:
            raise EngineStartError(
                "the engine answers requests without its per-boot key; refusing to serve it "
                "(check that engine_args do not switch its authentication off)"
            )

    async def _wait_ready(self, chute: Chute, engine: ChildProcess,
                          endpoint: Endpoint) -> dict[str, Any]:  # fmt: skip
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
                await self._check_key_required(chute, endpoint)
                return card_for(chute.engine_model, body)
            await asyncio.sleep(1.0)
        raise EngineStartError(
            f"engine not ready after {chute.settings.startup_timeout:.0f}s; "
            f"its last lines:\n{engine.last_lines()}"
        )

    async def _read_fields(self, chute: Chute, endpoint: Endpoint) -> EngineFields:
        """What the engine says its routes read, from its /openapi.json (once per chute)."""
        status, document = await self._get(endpoint, "/openapi.json")
        fields = EngineFields.from_openapi(document if status == 200 else None)
        if fields.by_path:
            log.info("[%s] request fields read from the engine's /openapi.json for %d routes",
                     chute.name, len(fields.by_path))  # fmt: skip
        else:
            log.warning("[%s] the engine publishes no request schemas (GET /openapi.json: %s): "
                        "its request fields are passed on unchecked", chute.name,
                        status or "no answer")  # fmt: skip
        return fields

    async def _watch(self, chute: Chute, replica: Replica, engine: ChildProcess,
                     endpoint: Endpoint) -> str:  # fmt: skip
        exited = asyncio.ensure_future(engine.exited())
        misses = 0
        try:
            while True:
                suspect = asyncio.ensure_future(replica.suspect.wait())
                interval = (self.config.probe_interval if replica.state is ChuteState.READY
                            else self.config.suspect_interval)  # fmt: skip
                await asyncio.wait({exited, suspect}, timeout=interval,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                suspect.cancel()
                if exited.done():
                    # Out of service at once: no request should reach a dead engine's address.
                    replica.state, replica.endpoint = ChuteState.RESTARTING, None
                    await engine.wait()  # its last lines, often the reason, reach the log
                    return f"engine exited with code {exited.result()}:\n{engine.last_lines(10)}"
                replica.suspect.clear()
                if await self._healthy(chute, replica, endpoint):
                    misses = 0
                    if replica.state is ChuteState.UNREACHABLE:
                        replica.state, replica.detail = ChuteState.READY, ""
                        log.info("[%s/%d] answers again", chute.name, replica.index)
                    continue
                misses += 1
                if misses >= self.config.probe_failures:
                    return f"engine failed {misses} health probes in a row"
        finally:
            exited.cancel()


async def prepare_model(chute: Chute, host: Host, config: SupervisorConfig) -> Path:
    """The folder the chute's engine loads: downloaded or converted once, cached."""
    return await prepare(
        resolve_source(chute.settings, chute.backend.single_file_suffixes),
        cache_dir=config.cache_dir,
        python=chute.settings.python or sys.executable,
        env={**host.environ, **chute.settings.env},
        access=config.hub,
        label=chute.name,
    )


def model_ids(listing: Any) -> list[str]:
    data = listing.get("data") if isinstance(listing, dict) else None
    return [str(e.get("id")) for e in data or [] if isinstance(e, dict)]


def card_for(name: str, listing: Any) -> dict[str, Any]:
    """The engine's model card for `name` out of its `/v1/models` reply."""
    if isinstance(listing, dict):
        for entry in listing.get("data", []):
            if isinstance(entry, dict) and entry.get("id") == name:
                return entry
    return {}
