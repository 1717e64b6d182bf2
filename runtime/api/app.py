"""The app factory: one fresh Starlette app per call, everything injected, nothing global."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runtime.access.gate import Access
from runtime.access.keyring import KeyRing
from runtime.access.meter import Meter
from runtime.access.metrics import KeyCollector
from runtime.access.store import UsageStore
from runtime.api.envelope import error_response
from runtime.api.handlers.cords import cord_routes
from runtime.api.handlers.openapi import openapi_route
from runtime.api.middleware.auth import AuthMiddleware, KeyCheck, public_routes
from runtime.api.middleware.chute_host import ChuteHostMiddleware
from runtime.api.middleware.invocation import InvocationMiddleware
from runtime.api.middleware.observe import ObserveMiddleware, Observer
from runtime.api.record import record_of
from runtime.api.route_table import OPERATIONS, exact_table, without_page
from runtime.api.routes import build_routes
from runtime.api.state import AppState, Limits
from runtime.config.settings import Settings
from runtime.errors import ChuteboxError, MethodNotAllowedError, NotFoundError
from runtime.fleet.chutes import ChuteSet
from runtime.fleet.e2ee import Instances
from runtime.http.engine_client import Upstream, UpstreamTimeouts
from runtime.observability.access import AccessLog
from runtime.observability.metrics import CONTENT_TYPE, Metrics
from runtime.observability.tracing import Tracing
from runtime.observability.traffic import Traffic
from runtime.protocol import e2ee as crypto
from runtime.protocol.rewrite import RewriteRules
from runtime.supervision.supervisor import Supervisor

log = logging.getLogger("chutebox.app")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_body_bytes=settings.max_body_bytes,
        max_n=settings.max_n,
        max_messages=settings.max_messages,
    )


def metrics_route(metrics: Metrics) -> Route:
    async def serve_metrics(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Route("/metrics", serve_metrics, methods=["GET"])


def rules_from(settings: Settings) -> RewriteRules:
    return RewriteRules(
        include_usage=settings.rewrite_include_usage,
        tool_choice=settings.rewrite_tool_choice,
        thinking=settings.rewrite_thinking,
        top_logprobs=settings.rewrite_top_logprobs,
    )


async def _chutebox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChuteboxError)
    return error_response(exc, record_of(request.scope).dialect)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error: ChuteboxError = MethodNotAllowedError(
            f"{request.method} is not allowed on {request.url.path}"
        )
    elif exc.status_code == 404:
        error = NotFoundError(f"no route {request.method} {request.url.path}", code="not_found")
    else:
        error = ChuteboxError(str(exc.detail))
        error.status_code = exc.status_code
    error.headers.update(exc.headers or {})
    return error_response(error, record_of(request.scope).dialect)


def keyring_from(settings: Settings, api_keys: tuple[str, ...], chutes: ChuteSet) -> KeyRing | None:
    """The keys requests need: the plain `api_keys` and the named ones of the settings
    (None: no auth — no plain key given, and none named or `settings.auth` off)."""
    named = settings.auth and bool(settings.keys or settings.keys_file)
    if not api_keys and not named:
        return None
    return KeyRing(
        api_keys,
        settings.keys if named else (),
        settings.keys_file if named else None,
        [c.name for c in chutes],
    )


def create_app(
    settings: Settings,
    chutes: ChuteSet,
    *,
    api_keys: tuple[str, ...] = (),
    supervisor: Supervisor | None = None,
    tracing: Tracing | None = None,
) -> Starlette:
    """Build the gateway. Requests need a key when `api_keys` (plain, unlimited keys, which
    the CLI decides from settings) or the settings' named keys give one; `tracing`: where
    request spans go (None: no tracing)."""

    metrics = Metrics(chutes) if settings.metrics else None
    access_log = AccessLog() if settings.access_log else None
    traffic = Traffic()
    operations = OPERATIONS if settings.ui else without_page(OPERATIONS)
    timeouts = UpstreamTimeouts(
        connect=settings.upstream_connect_timeout,
        read=settings.upstream_read_timeout or None,
        max_connections=settings.upstream_max_connections,
    )

    keyring = keyring_from(settings, api_keys, chutes)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        upstream = Upstream.create(timeouts)
        meter = Meter(UsageStore(settings.usage_db or Path(":memory:")))
        access = Access(meter, tuple(c.name for c in chutes))
        background = [asyncio.ensure_future(meter.run())]
        per_key = KeyCollector(meter)
        if metrics is not None:
            metrics.registry.register(per_key)
        if keyring is not None and keyring.keys_file is not None:
            background.append(asyncio.ensure_future(keyring.watch()))
            reload_on_hangup(keyring)
        if supervisor is not None:
            await supervisor.start(upstream)
        gateway = AppState(
            chutes=chutes,
            upstream=upstream,
            rules=rules_from(settings),
            strict_params=settings.strict_params,
            limits=limits_from(settings),
            access=access,
            metrics=metrics,
            keepalive=settings.sse_keepalive,
            traffic=traffic,
            auth_required=keyring is not None,
            operations=operations,
            e2ee=e2ee_instances(chutes),
        )
        try:
            yield {"gateway": gateway}
        finally:
            chutes.draining = True
            if supervisor is not None:
                await supervisor.stop()
            await upstream.close()
            for task in background:
                task.cancel()
            if metrics is not None:
                metrics.registry.unregister(per_key)
            await meter.close()  # what the last requests used, written before the exit
            if tracing is not None:  # the spans still buffered go out before the exit
                await asyncio.to_thread(tracing.shutdown)

    document = openapi_route(
        metrics=metrics is not None,
        public_models=settings.public_models,
        operations=operations,
    )
    routes: list[BaseRoute] = [*build_routes(operations), document]
    if metrics is not None:
        routes.append(metrics_route(metrics))
    routes += cord_routes(chutes, taken={r.path for r in routes if isinstance(r, Route)})
    observer = Observer(metrics, access_log, traffic, tracing)
    middleware = [
        Middleware(ObserveMiddleware, observer=observer, operations=exact_table(operations)),
        Middleware(InvocationMiddleware),
    ]
    hosts = {f"{c.code.username}-{c.name}".lower(): c.name for c in chutes if c.code is not None}
    if hosts:  # outermost: every layer sees the chute's `/chutes/...` path
        middleware.insert(0, Middleware(ChuteHostMiddleware, hosts=hosts))
    if settings.cors_origins:
        middleware.append(cors_middleware(settings.cors_origins))
    if keyring is not None:
        public_paths = {op.path for op in operations if op.public}
        is_public = public_routes(settings.public_models, public_paths)
        middleware.append(Middleware(AuthMiddleware, check=KeyCheck(keyring, is_public)))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={ChuteboxError: _chutebox_error, HTTPException: _http_error},
        lifespan=lifespan,
    )


def e2ee_instances(chutes: ChuteSet) -> Instances | None:
    """A key pair for every replica of every model chute, made now and kept in memory only
    (None without the `e2ee` extra: the /e2e routes then answer 501 saying so)."""
    if not crypto.available():
        return None
    return Instances([(c.name, r.index) for c in chutes if c.code is None for r in c.replicas])


def reload_on_hangup(keyring: KeyRing) -> None:
    """SIGHUP re-reads the keys file now (where the loop can take signals: the main thread)."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, keyring.reload)
    except (RuntimeError, ValueError, NotImplementedError):
        log.debug("SIGHUP cannot be handled here; the keys file is still watched")


def cors_middleware(origins: tuple[str, ...]) -> Middleware:
    # Outside auth: browsers send preflight OPTIONS without credentials.
    return Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "X-API-Key",
            "Content-Type",
            "X-Request-Id",
            "X-Enable-Thinking",
            # Anthropic's clients send these with every request (browsers preflight them).
            "Anthropic-Version",
            "Anthropic-Beta",
        ],  # fmt: skip
        expose_headers=[
            "X-Chutes-InvocationID",
            "X-Request-Id",
            "Server-Timing",
            "X-Chutes-Conn-Used",
            "X-Chutes-Conn-Available",
            "X-Chutes-Conn-Utilization",
            "Retry-After",
        ],  # fmt: skip
        max_age=600,
    )
