"""What route handlers need, bundled once per app: settings-derived rules, chutes, client."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from runtime.chutes import ChuteSet
from runtime.errors import PayloadTooLargeError
from runtime.metrics import Metrics
from runtime.rewrite import RewriteRules
from runtime.upstream import Upstream


@dataclass(frozen=True)
class Limits:
    """Request limits beyond what the schemas check; each violation is a 400 naming it."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_n: int = 16
    max_messages: int = 2048


@dataclass(frozen=True)
class Gateway:
    chutes: ChuteSet
    upstream: Upstream
    rules: RewriteRules
    strict_params: bool
    limits: Limits
    metrics: Metrics | None = None
    keepalive: float = 0.0


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.state.gateway
    return gateway


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the request body is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
