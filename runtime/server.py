"""Wiring for `chutebox serve`: chutes from settings, the supervisor, uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import uvicorn

from engines.registry import UnknownEngineError, load_backend
from runtime.admission import Admission
from runtime.app import create_app
from runtime.chutes import Chute, ChuteSet
from runtime.errors import ConfigError
from runtime.host import Host
from runtime.hub import HubAccess
from runtime.settings import ChuteSettings, Settings
from runtime.sources import resolve_source
from runtime.supervisor import Supervisor, SupervisorConfig, split_args

log = logging.getLogger("chutebox")


def build_chute(settings: ChuteSettings) -> Chute:
    """A chute ready to start, or a ConfigError saying why it cannot be served."""
    try:
        backend = load_backend(settings.engine)
    except UnknownEngineError as exc:
        raise ConfigError(f"chute {settings.served_name}: {exc}") from None
    try:
        backend.check_args(split_args(settings.engine_args))
        resolve_source(settings, backend.single_file_suffixes)
    except ValueError as exc:  # shlex: unbalanced quotes
        raise ConfigError(f"chute {settings.served_name}: engine_args: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"chute {settings.served_name}: {exc}") from None
    limit = settings.concurrency or backend.default_concurrency
    return Chute(settings=settings, backend=backend, admission=Admission(limit))


def supervisor_config(settings: Settings) -> SupervisorConfig:
    hf_home = settings.hf_home or Path("~/.cache/huggingface")
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    access = HubAccess(
        endpoint=settings.hf_endpoint, cache_dir=hf_home.expanduser() / "hub", token=token
    )
    return SupervisorConfig(cache_dir=settings.cache_dir.expanduser(), hub=access)


def run_server(settings: Settings, api_keys: tuple[str, ...], environ: Mapping[str, str]) -> int:
    chutes = ChuteSet(build_chute(c) for c in settings.chutes)
    supervisor = Supervisor(chutes, Host.discover(environ), supervisor_config(settings))
    app = create_app(settings, chutes, api_keys=api_keys, supervisor=supervisor)
    log.info(
        "gateway on http://%s:%d/v1 serving %s; GET /ready turns 200 once every engine answers",
        settings.host, settings.port, ", ".join(c.name for c in chutes),
    )  # fmt: skip
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        lifespan="on",
        access_log=settings.log_level == "debug",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
