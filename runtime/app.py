"""The app factory: one fresh Starlette app per call, everything injected, nothing global."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from runtime.auth import AuthMiddleware, public_routes
from runtime.chutes import ChuteSet
from runtime.errors import (
    ChuteboxError,
    MethodNotAllowedError,
    NotFoundError,
    error_response,
)
from runtime.gateway import Gateway
from runtime.invocation import InvocationMiddleware
from runtime.rewrite import RewriteRules
from runtime.routes import all_routes
from runtime.settings import Settings
from runtime.supervisor import Supervisor
from runtime.upstream import Upstream

log = logging.getLogger("chutebox.app")


def rules_from(settings: Settings) -> RewriteRules:
    return RewriteRules(
        include_usage=settings.rewrite_include_usage,
        tool_choice=settings.rewrite_tool_choice,
        thinking=settings.rewrite_thinking,
        top_logprobs=settings.rewrite_top_logprobs,
    )


async def _chutebox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChuteboxError)
    return error_response(exc)


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
    return error_response(error)


def create_app(
    settings: Settings,
    chutes: ChuteSet,
    *,
    api_keys: tuple[str, ...] = (),
    supervisor: Supervisor | None = None,
) -> Starlette:
    """Build the gateway. `api_keys` empty means no auth (the CLI decides, from settings)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        upstream = Upstream.create()
        if supervisor is not None:
            await supervisor.start(upstream)
        gateway = Gateway(
            chutes=chutes,
            upstream=upstream,
            rules=rules_from(settings),
            strict_params=settings.strict_params,
            max_body_bytes=settings.max_body_bytes,
        )
        try:
            yield {"gateway": gateway}
        finally:
            chutes.draining = True
            if supervisor is not None:
                await supervisor.stop()
            await upstream.close()

    middleware = [Middleware(InvocationMiddleware)]
    if api_keys:
        is_public = public_routes(settings.public_models)
        middleware.append(Middleware(AuthMiddleware, keys=api_keys, is_public=is_public))
    return Starlette(
        routes=all_routes(),
        middleware=middleware,
        exception_handlers={ChuteboxError: _chutebox_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
