"""What route handlers need, bundled once per app: settings-derived rules, chutes, client."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from runtime.chutes import ChuteSet
from runtime.errors import PayloadTooLargeError
from runtime.rewrite import RewriteRules
from runtime.upstream import Upstream


@dataclass(frozen=True)
class Gateway:
    chutes: ChuteSet
    upstream: Upstream
    rules: RewriteRules
    strict_params: bool
    max_body_bytes: int


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
