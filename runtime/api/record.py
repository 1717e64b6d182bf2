"""The one typed record of a request, made by the outermost middleware and read by the rest.

It travels in the ASGI scope under `RECORD` (not in Starlette's untyped `scope["state"]`):
the operation the path named, the invocation id, when the request began, and what the route
learned on the way (the chute, the engine's share of the time, the token usage, whether the
client left) for the access log, the metrics and `Server-Timing`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.types import Scope

from runtime.errors import Dialect
from runtime.observability.usage import Usage

if TYPE_CHECKING:
    from runtime.api.operation import Operation
    from runtime.api.state import Gateway

RECORD = "chutebox.request"


@dataclass(slots=True)
class RequestRecord:
    """What one request is and what became of it."""

    gateway: Gateway | None
    operation: Operation | None
    invocation_id: str
    started: float
    # The request's headers by (lower-case) name, each name's first value: one dict made in
    # C, where a scan of the list in Python for each header wanted cost more. `repeated`:
    # some name came more than once (what reads every value must then read the list).
    headers: dict[bytes, bytes] = field(default_factory=dict)
    repeated: bool = False
    chute: str = ""
    engine_wait: float | None = None
    # Seconds from the request's start to a stream's first event.
    ttft: float | None = None
    usage: Usage | None = None
    disconnected: bool = False
    # A configured key came with the request (set on public routes too, where it is optional).
    authenticated: bool = False

    @classmethod
    def begin(
        cls, scope: Scope, operation: Operation | None, ids: InvocationIds | None = None
    ) -> RequestRecord:
        """The record of a request starting now, its id from `ids` (else the OS's own)."""
        state = scope.get("state") or {}  # the lifespan's state, as the server copies it in
        raw = scope["headers"]
        if not isinstance(raw, list | tuple):  # ASGI allows any iterable: read it once
            raw = scope["headers"] = list(raw)
        headers = dict(reversed(raw))  # reversed: a repeated name keeps its first value
        # Positional: the generated __init__ takes them faster than by keyword.
        invocation_id = ids.next() if ids is not None else os.urandom(16).hex()
        record = cls(state.get("gateway"), operation, invocation_id, perf_counter(), headers,
                     len(headers) != len(raw))  # fmt: skip
        scope[RECORD] = record
        return record

    @property
    def dialect(self) -> Dialect:
        return self.operation.dialect if self.operation is not None else Dialect.OPENAI


class InvocationIds:
    """Request ids with uuid4's randomness (128 bits from the OS, as 32 hex digits, without
    the UUID object), read `batch` at a time: a system call per request cost a relayed one
    ~0.3 µs. One per app, in the process that serves."""

    def __init__(self, batch: int = 256) -> None:
        self.batch = batch
        self._digits = ""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._digits):
            self._digits, at = os.urandom(16 * self.batch).hex(), 0
        self._at = at + 32
        return self._digits[at : at + 32]


def record_of(scope: Scope) -> RequestRecord:
    """The request's record; one is made here when no middleware made it (a bare app)."""
    record: RequestRecord | None = scope.get(RECORD)
    return record if record is not None else RequestRecord.begin(scope, None)
