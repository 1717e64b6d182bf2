"""Where a request meets its caller's limits and leaves its usage: admission of the key to
the chute the request reached, and the settlement from what the request's record learned."""

from __future__ import annotations

from typing import Any

from runtime.access.estimate import estimate_tokens
from runtime.access.gate import Access
from runtime.access.identity import UNLIMITED
from runtime.access.store import Counts
from runtime.api.record import RequestRecord


def admit_caller(access: Access, record: RequestRecord, chute: str, data: Any) -> None:
    """Admit the request's caller to `chute` (403, 402 or 429 when it may not), reserving
    its place; a reservation an earlier chute of a model list made is given back first."""
    if record.ticket is not None:
        access.cancel(record.ticket)
        record.ticket = None
    caller = record.caller or UNLIMITED
    # Only a tokens-per-minute limit reads the estimate: most keys need no walk of the body.
    estimate = estimate_tokens(data) if caller.tpm is not None else 0
    record.ticket = access.admit(caller, chute, estimate)


def settle_caller(access: Access, record: RequestRecord, status: int, elapsed: float) -> None:
    """Record what the request used, or give its reservation back when it was refused
    before any work (an error answered and no usage, the client still there)."""
    ticket = record.ticket
    if ticket is None:
        return
    if status >= 400 and record.usage is None and not record.disconnected:
        access.cancel(ticket)
        return
    usage = record.usage
    counts = Counts(requests=1, images=record.images, steps=record.steps)
    if usage is not None:
        counts.input_tokens = usage.prompt_tokens
        counts.output_tokens = usage.completion_tokens
        counts.cached_tokens = usage.cached_tokens
    if record.operation is None:  # a cord: what a custom chute uses is its time
        counts.compute_seconds = elapsed
    access.settle(ticket, counts)
