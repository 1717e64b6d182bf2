"""Wiring for `chutebox serve`: chutes from settings, the supervisor, uvicorn."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from runtime.api.app import create_app
from runtime.chute_files.custom import describe
from runtime.config.engine_url import engine_address, in_clear_over_a_network
from runtime.config.settings import ChuteSettings, Settings
from runtime.errors import ConfigError
from runtime.fleet.admission import Admission
from runtime.fleet.backend import CORDS, KEY_VARIABLES, PACKAGE_ROOT, EngineBackend, split_args
from runtime.fleet.chutes import Chute, ChuteSet
from runtime.fleet.cords import chute_attr
from runtime.fleet.registry import UnknownEngineError, load_backend
from runtime.http.engine_client import Endpoint
from runtime.http.guard import ConnectionLimits, guarded_protocol
from runtime.observability.tracing import Tracing
from runtime.planner.host import Host
from runtime.planner.inventory import parse_gpu_spec
from runtime.planner.plan import Plan
from runtime.supervision.hub import HubAccess
from runtime.supervision.layout import cached_folder, plan_chutes
from runtime.supervision.remote import read_key
from runtime.supervision.sources import resolve_source
from runtime.supervision.supervisor import Supervisor, SupervisorConfig

log = logging.getLogger("chutebox")


def check_importable(settings: ChuteSettings, backend: EngineBackend) -> None:
    """The engine's interpreter must find the engine; say what to install if it does not."""
    python = settings.python or sys.executable
    found = f"importlib.util.find_spec({backend.module!r})"
    code = f"import importlib.util, sys; sys.exit(0 if {found} else 3)"
    try:
        # From chutebox's own folder, so its worker modules count as importable (the engines
        # run them with that folder on PYTHONPATH).
        result = subprocess.run([python, "-c", code], capture_output=True, timeout=60,
                                cwd=PACKAGE_ROOT)  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"python {python!r} cannot be run: {exc.strerror}") from None
    if result.returncode == 3:
        raise ConfigError(
            f"engine {backend.name}: {python} cannot import {backend.module}; install it "
            f"there: {backend.install_hint}"
        )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-500:]
        raise ConfigError(f"python {python!r} failed to start: {detail}")


def build_chute(
    settings: ChuteSettings,
    *,
    check_engine: bool = True,
    queue: tuple[int, float] = (0, 30.0),
    environ: Mapping[str, str] | None = None,
) -> Chute:
    """A chute ready to start, or a ConfigError saying why it cannot be served."""
    try:
        backend = load_backend(settings.engine)
    except UnknownEngineError as exc:
        raise ConfigError(f"chute {settings.served_name}: {exc}") from None
    limit = settings.concurrency or backend.default_concurrency
    queue_size, queue_timeout = queue
    admission = Admission(limit, queue_size=queue_size, queue_timeout=queue_timeout)
    if settings.remote:
        return Chute(settings=settings, backend=backend, admission=admission,
                     remote=remote_endpoints(settings, environ or {}))  # fmt: skip
    if not backend.module:  # nothing to start: a front for a server running elsewhere
        raise ConfigError(f"chute {settings.served_name}: engine {backend.name} is a server "
                          "chutebox does not start; give its `url`")  # fmt: skip
    if settings.nodes > 1 and not backend.multi_node:
        raise ConfigError(f"chute {settings.served_name}: engine {backend.name} runs on one "
                          "node; nodes > 1 needs vllm or sglang")  # fmt: skip
    reserved = sorted(KEY_VARIABLES & set(settings.env))
    if reserved:
        raise ConfigError(f"chute {settings.served_name}: env may not set {reserved[0]}: "
                          "chutebox sets each engine's per-boot key")  # fmt: skip
    try:
        backend.check_args(split_args(settings.engine_args))
        resolve_source(settings, backend.single_file_suffixes)
    except ValueError as exc:  # shlex: unbalanced quotes
        raise ConfigError(f"chute {settings.served_name}: engine_args: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"chute {settings.served_name}: {exc}") from None
    code = None
    if check_engine and CORDS in backend.capabilities:
        # What the gateway routes by, from the chute's own interpreter; this also finds an
        # interpreter without the SDK, and says what to install where.
        code = describe(Path(settings.model), chute_attr(split_args(settings.engine_args)),
                        settings.python)  # fmt: skip
    elif check_engine:
        check_importable(settings, backend)
    return Chute(settings=settings, backend=backend, admission=admission, code=code)


def remote_endpoints(settings: ChuteSettings, environ: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """The engines at a chute's `url`s, with the key read from where the chute says."""
    try:
        key = read_key(settings.api_key_env, settings.api_key_path, environ)
    except ConfigError as exc:
        raise ConfigError(f"chute {settings.served_name}: {exc}") from None
    ca_file = str(settings.ca_file.expanduser()) if settings.ca_file is not None else None
    for url in settings.url:
        if key and in_clear_over_a_network(url):
            log.warning("chute %s: %s is plain http: its key and every prompt cross the "
                        "network in clear; use https:// unless the network is private",
                        settings.served_name, url)  # fmt: skip
    return tuple(Endpoint(engine_address(url), key, ca_file) for url in settings.url)


def plan_for_settings(
    settings: Settings, environ: Mapping[str, str], gpu_specs: list[str] | None = None
) -> Plan:
    """The plan `chutebox plan` prints: local facts only, nothing downloaded or started."""
    # A dry run: the engines need not be installed on the machine that plans.
    chutes = [build_chute(c, check_engine=False, environ=environ) for c in settings.chutes
              if not c.remote]  # fmt: skip
    if gpu_specs:
        nodes = [parse_gpu_spec(spec, f"node{i}") for i, spec in enumerate(gpu_specs)]
    else:
        nodes = [Host.discover(environ).node]
    return plan_chutes(chutes, early_folders(ChuteSet(chutes), settings), nodes)


def early_folders(chutes: ChuteSet, settings: Settings) -> dict[str, Path | None]:
    config = supervisor_config(settings)
    return {
        c.name: cached_folder(
            resolve_source(c.settings, c.backend.single_file_suffixes),
            config.cache_dir,
            config.hub.cache_dir,
        )
        for c in chutes
    }


def supervisor_config(settings: Settings) -> SupervisorConfig:
    hf_home = settings.hf_home or Path("~/.cache/huggingface")
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    access = HubAccess(
        endpoint=settings.hf_endpoint, cache_dir=hf_home.expanduser() / "hub", token=token
    )
    return SupervisorConfig(
        cache_dir=settings.cache_dir.expanduser(),
        hub=access,
        link=settings.engine_link,
        leader_address=settings.leader_address,
        otlp_endpoint=settings.otlp_endpoint or "",
        otlp_protocol=settings.otlp_protocol,
        max_loaded=settings.max_loaded,
    )


def build_server(settings: Settings, environ: Mapping[str, str]) -> tuple[ChuteSet, Host]:
    """Every check that can fail before anything starts: engines, sources, the GPU plan."""
    queue = (settings.queue_size, settings.queue_timeout)
    chutes = ChuteSet(build_chute(c, queue=queue, environ=environ) for c in settings.chutes)
    host = Host.discover(environ)
    # Models not on this machine yet are planned again once prepared.
    local = [c for c in chutes if not c.remote]
    plan_chutes(local, early_folders(ChuteSet(local), settings), [host.node])
    return chutes, host


class DrainingServer(uvicorn.Server):
    """uvicorn that drains before it stops.

    The first SIGTERM or SIGINT (Ctrl-C) turns readiness to 503 and refuses new engine
    requests with 503, while the listener stays open so load balancers can see it; requests in
    flight get up to `drain_timeout` seconds to finish, then uvicorn shuts down as usual
    (lifespan: engines stop). A second signal skips the wait: the relays still running end at
    once (503, or an error event mid-stream) and engines get a short grace. Either way the
    process then returns normally: uvicorn would re-raise the signal once stopped, which for
    SIGINT prints a KeyboardInterrupt traceback after an otherwise clean shutdown.
    """

    def __init__(self, config: uvicorn.Config, chutes: ChuteSet, drain_timeout: float) -> None:
        super().__init__(config)
        self.chutes = chutes
        self.drain_timeout = drain_timeout
        self._drain: asyncio.Task[None] | None = None
        self.signalled: str | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything built by now lives as long as the process: move it out of the collector's
        # sight, and collect the young generation less often, so that collections on the
        # request path scan only what requests create (issue 11's profile: GC pauses were
        # the c=32 tail).
        gc.collect()
        gc.freeze()
        gc.set_threshold(5_000, 20, 20)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        name = signal.Signals(sig).name
        if not self.started or self.chutes.draining:
            if self.chutes.draining:
                log.info("%s again: stopping without waiting for requests in flight", name)
                asyncio.get_running_loop().call_soon_threadsafe(self.chutes.stop_relays)
            self.should_exit = True
            return
        self.signalled = name
        self.chutes.draining = True
        log.info("%s: draining; readiness is 503 and new requests are refused; %d in flight "
                 "get up to %.0fs (signal again to stop now)", name, in_flight(self.chutes),
                 self.drain_timeout)  # fmt: skip
        # A signal handler interrupts the loop mid-step: schedule, do not touch its queues.
        asyncio.get_running_loop().call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain = asyncio.get_running_loop().create_task(self._wait_in_flight())

    async def _wait_in_flight(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while in_flight(self.chutes) and time.monotonic() < deadline and not self.should_exit:
            await asyncio.sleep(0.05)
        if in_flight(self.chutes) and not self.should_exit:
            log.warning("drain timeout: %d requests still in flight end now",
                        in_flight(self.chutes))  # fmt: skip
            self.chutes.stop_relays()
        self.should_exit = True


def in_flight(chutes: ChuteSet) -> int:
    return sum(r.outstanding for c in chutes for r in c.replicas)


def raise_open_file_limit(wanted: int) -> int:
    """Lift the soft limit on open files towards the hard one, so `max_connections` clients
    plus the engines' sockets fit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = min(wanted, ceiling)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return int(soft)


def connection_limits(settings: Settings) -> ConnectionLimits:
    # Room beyond the clients: engine connections, log files, the engines' pipes.
    reserve = settings.upstream_max_connections * max(1, len(settings.chutes)) + 256
    files = raise_open_file_limit(settings.max_connections + reserve)
    cap = settings.max_connections
    if files < cap + reserve:
        cap = max(1, files - reserve)
        log.warning("open-file limit %d: client connections capped at %d (max_connections "
                    "%d); raise `ulimit -n` for more", files, cap,
                    settings.max_connections)  # fmt: skip
    return ConnectionLimits(settings.header_timeout, settings.body_timeout, cap)


def server_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """How `chutebox serve` runs the gateway under uvicorn (the benches run it the same way)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(connection_limits(settings)),
        timeout_keep_alive=settings.keepalive_timeout,
        log_level=settings.log_level,
        # runtime.observability.logs configured logging; uvicorn's records flow into it.
        log_config=None,
        # The drain already gave requests their time; this only flushes what remains.
        timeout_graceful_shutdown=2,
        lifespan="on",
        # runtime.api.middleware.observe writes the access log, with chute and tokens.
        access_log=False,
    )


def run_server(settings: Settings, api_keys: tuple[str, ...], chutes: ChuteSet, host: Host) -> int:
    supervisor = Supervisor(chutes, host, supervisor_config(settings))
    tracing = None
    if settings.otlp_endpoint:
        tracing = Tracing.create(settings.otlp_endpoint, settings.otlp_protocol)
        log.info("tracing to %s (%s)", settings.otlp_endpoint, settings.otlp_protocol)
    app = create_app(settings, chutes, api_keys=api_keys, supervisor=supervisor, tracing=tracing)
    log.info(
        "gateway on http://%s:%d/v1 serving %s; GET /ready turns 200 once every engine answers",
        settings.host, settings.port, ", ".join(c.name for c in chutes),
    )  # fmt: skip
    server = DrainingServer(server_config(app, settings), chutes, settings.shutdown_timeout)
    server.run()
    if server.signalled:
        log.info("stopped (%s)", server.signalled)
    return 0 if server.started else 1
