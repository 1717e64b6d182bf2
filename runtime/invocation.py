"""Per-request identity: `X-Chutes-InvocationID` on every reply, `X-Request-Id` echoed.

Pure ASGI middleware; the id is the request record's (`runtime.record`), so errors and logs
name the same one.
It is also the last line of defence: an unexpected exception becomes a generic 500 in the
error envelope, naming the invocation id, while the traceback goes to the log only.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.envelope import error_response
from runtime.errors import ChuteboxError
from runtime.record import record_of

log = logging.getLogger("chutebox.app")

INVOCATION_HEADER = b"x-chutes-invocationid"


class InvocationMiddleware:
    """Stamp every HTTP reply with an invocation id and the caller's request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = record_of(scope)
        invocation_id = record.invocation_id
        request_id = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        extra = [(INVOCATION_HEADER, invocation_id.encode())]
        if request_id is not None:
            extra.append((b"x-request-id", request_id))

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
            log.exception("unhandled error in invocation %s", invocation_id)
            if started:
                raise
            error = ChuteboxError(f"internal error (invocation {invocation_id})")
            await error_response(error, record.dialect)(scope, receive, stamped)
