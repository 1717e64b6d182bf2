"""Per-request identity: `X-Chutes-InvocationID` on every reply, `X-Request-Id` echoed.

Pure ASGI middleware; the id is the request record's (`runtime.api.record`), so errors and logs
name the same one.
It is also the last line of defence: an unexpected exception becomes a generic 500 in the
error envelope, naming the invocation id, while the traceback goes to the log only.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.envelope import error_response
from runtime.api.record import RequestRecord, record_of
from runtime.errors import ChuteboxError

log = logging.getLogger("chutebox.app")

INVOCATION_HEADER = b"x-chutes-invocationid"


def stamps(scope: Scope, record: RequestRecord) -> list[tuple[bytes, bytes]]:
    """The headers every reply gets: the invocation id, and the caller's request id."""
    extra = [(INVOCATION_HEADER, record.invocation_id.encode())]
    request_id = record.headers.get(b"x-request-id")
    if request_id is not None:
        extra.append((b"x-request-id", request_id))
    return extra


def internal_error(record: RequestRecord) -> ChuteboxError:
    """An unexpected exception, as the client sees it (the traceback goes to the log)."""
    log.exception("unhandled error in invocation %s", record.invocation_id)
    return ChuteboxError(f"internal error (invocation {record.invocation_id})")


class InvocationMiddleware:
    """Stamp every HTTP reply with an invocation id and the caller's request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = record_of(scope)
        extra = stamps(scope, record)
        started = False

        async def stamped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        except Exception:
            error = internal_error(record)
            if started:
                raise
            await error_response(error, record.dialect)(scope, receive, stamped)
