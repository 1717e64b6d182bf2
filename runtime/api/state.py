"""The app's lifespan state: what route handlers need, bundled once per app (settings-derived
rules, the chutes, the engine client), and reading a request's body within its limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from runtime.access.gate import Access
from runtime.errors import ChuteboxError, PayloadTooLargeError
from runtime.fleet.chutes import ChuteSet
from runtime.fleet.e2ee import Instances
from runtime.fleet.stored import StoredResponses
from runtime.http.engine_client import Upstream
from runtime.observability.metrics import Metrics
from runtime.observability.traffic import Traffic
from runtime.protocol.e2ee import INSTALL_HINT
from runtime.protocol.rewrite import RewriteRules

if TYPE_CHECKING:
    from runtime.api.operation import Operation


@dataclass(frozen=True)
class Limits:
    """Request limits beyond what the schemas check; each violation is a 400 naming it."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_n: int = 16
    max_messages: int = 2048


@dataclass(frozen=True)
class AppState:
    """What the app's lifespan made, shared by every request (`request.state.gateway`)."""

    chutes: ChuteSet
    upstream: Upstream
    rules: RewriteRules
    strict_params: bool
    limits: Limits
    # Keys' limits and the usage meter (runtime.access).
    access: Access
    metrics: Metrics | None = None
    keepalive: float = 0.0
    # Which replica holds each stored response (bounded; see runtime.fleet.stored).
    stored: StoredResponses = field(default_factory=StoredResponses)
    traffic: Traffic | None = None
    # Whether requests need a key (False: every caller sees what a key shows).
    auth_required: bool = True
    # The routes this app was built with (runtime.api.route_table, less the page with --no-ui).
    operations: tuple[Operation, ...] = ()
    # Each replica's E2EE key pair and nonces (None: the `e2ee` extra is not installed).
    e2ee: Instances | None = None

    def e2ee_instances(self) -> Instances:
        if self.e2ee is None:
            error = ChuteboxError(f"end-to-end encryption is off here: {INSTALL_HINT}")
            error.status_code, error.code = 501, "e2ee_unavailable"
            raise error
        return self.e2ee


def gateway_of(request: Request) -> AppState:
    gateway: AppState = request.state.gateway
    return gateway


async def read_body(headers: Mapping[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before reading it all:
    counted as it streams in, not only from Content-Length (in `headers`, by name)."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the request body is over the {limit}-byte limit")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the common case: one message
        if len(body) > limit:
            raise PayloadTooLargeError(f"the request body is over the {limit}-byte limit")
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
