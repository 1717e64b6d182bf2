"""The one typed record of a request, made by the outermost middleware and read by the rest.

It travels in the ASGI scope under `RECORD` (not in Starlette's untyped `scope["state"]`):
the operation the path named, the invocation id, when the request began, and what the route
learned on the way (the chute, the engine's share of the time, the token usage, whether the
client left) for the access log, the metrics and `Server-Timing`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.types import Scope

from runtime.errors import Dialect
from runtime.observability.usage import Usage

if TYPE_CHECKING:
    from runtime.access.gate import Ticket
    from runtime.access.identity import Identity
    from runtime.api.operation import Operation
    from runtime.api.state import AppState

RECORD = "chutebox.request"


@dataclass
class RequestRecord:
    """What one request is and what became of it."""

    gateway: AppState | None
    operation: Operation | None
    invocation_id: str
    started: float
    # The request's headers by (lower-case) name, each name's first value.
    headers: dict[bytes, bytes] = field(default_factory=dict)
    chute: str = ""
    engine_wait: float | None = None
    # Seconds from the request's start to a stream's first event.
    ttft: float | None = None
    usage: Usage | None = None
    disconnected: bool = False
    # Times the request moved off an engine that died under it (runtime.api.relay.migration).
    migrations: int = 0
    # For its trace (runtime.observability.tracing), when tracing is on: the `model` asked
    # for, the replica that answered, the seconds spent waiting for a slot, the reply's id,
    # and the headers that carry the trace to the engine.
    model: str | None = None
    replica: int | None = None
    queue_time: float | None = None
    response_id: str | None = None
    trace_headers: dict[str, str] | None = None
    # A configured key came with the request (set on public routes too, where it is optional).
    authenticated: bool = False
    # Whose key it was, and the reservations its admission to the chute made
    # (runtime.access.gate), settled when the request ends.
    caller: Identity | None = None
    ticket: Ticket | None = None
    # What an image request asked for (images and denoising steps each), for its metering.
    images: int = 0
    steps: int = 0
    # Seconds the request waited for its on-demand chute to load (None: it was loaded).
    load_wait: float | None = None
    # The (chute, replica) whose key an E2EE request was sealed to (runtime.fleet.e2ee).
    sealed_to: tuple[str, int] | None = None

    @classmethod
    def begin(cls, scope: Scope, operation: Operation | None) -> RequestRecord:
        """The record of a request starting now, with a fresh invocation id."""
        state = scope.get("state") or {}  # the lifespan's state, as the server copies it in
        raw = scope["headers"] = list(scope["headers"])  # ASGI allows any iterable: read once
        record = cls(
            gateway=state.get("gateway"),
            operation=operation,
            invocation_id=uuid.uuid4().hex,
            started=perf_counter(),
            # reversed: a repeated name keeps its first value
            headers=dict(reversed(raw)),
        )
        scope[RECORD] = record
        return record

    @property
    def dialect(self) -> Dialect:
        return self.operation.dialect if self.operation is not None else Dialect.OPENAI


def record_of(scope: Scope) -> RequestRecord:
    """The request's record; one is made here when no middleware made it (a bare app)."""
    record: RequestRecord | None = scope.get(RECORD)
    return record if record is not None else RequestRecord.begin(scope, None)
