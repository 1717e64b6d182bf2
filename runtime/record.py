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
from runtime.usage import Usage

if TYPE_CHECKING:
    from runtime.gateway import Gateway
    from runtime.operation import Operation

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
    def begin(cls, scope: Scope, operation: Operation | None) -> RequestRecord:
        state = scope.get("state") or {}  # the lifespan's state, as the server copies it in
        raw = scope["headers"]
        if not isinstance(raw, list | tuple):  # ASGI allows any iterable: read it once
            raw = scope["headers"] = list(raw)
        headers = dict(reversed(raw))  # reversed: a repeated name keeps its first value
        # Positional: the generated __init__ takes them faster than by keyword. The id has
        # uuid4's randomness, without the UUID object.
        record = cls(state.get("gateway"), operation, os.urandom(16).hex(), perf_counter(),
                     headers, len(headers) != len(raw))  # fmt: skip
        scope[RECORD] = record
        return record

    @property
    def dialect(self) -> Dialect:
        return self.operation.dialect if self.operation is not None else Dialect.OPENAI


def record_of(scope: Scope) -> RequestRecord:
    """The request's record; one is made here when no middleware made it (a bare app)."""
    record: RequestRecord | None = scope.get(RECORD)
    return record if record is not None else RequestRecord.begin(scope, None)
