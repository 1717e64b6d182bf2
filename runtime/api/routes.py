"""Routes derived from the operation table, and the direct path for the engine routes.

The relay routes carry nearly all the load. Through Starlette and the middleware stack each
request paid a layer per middleware (a coroutine each, and a wrapper around `send` for
three of them) and a regex per route tried (issues 11 and 18's profiles). `DirectApp` is the
outermost app: an engine operation with an exact (path, method) runs in that one layer —
the request's record, the key check, the invocation headers and `Server-Timing` added as
the reply starts, the relay, then the metrics and access log — doing what the middleware
does, from the same functions. Everything else (the gateway's own routes, routes with path
parameters, unknown paths and methods, lifespan) goes to the Starlette app, built from the
same table, whose middleware does the same per layer. With CORS configured every request
takes the stack (CORS headers are added there).
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.envelope import error_response
from runtime.api.middleware.auth import KeyCheck
from runtime.api.middleware.invocation import internal_error, stamps
from runtime.api.middleware.observe import Observer, server_timing
from runtime.api.operation import Operation, Target
from runtime.api.record import RequestRecord
from runtime.api.relay.request import Forward, forward
from runtime.api.route_table import OPERATIONS
from runtime.errors import ChuteboxError
from runtime.http.exchange import RESPONSE

# The messages that start a reply: the head gets its stamps there.
_STARTS = ("http.response.start", RESPONSE)


def build_routes(operations: tuple[Operation, ...] = OPERATIONS) -> list[Route]:
    """One Starlette route per operation, engine routes first (the router tries in order)."""
    engine = [op for op in operations if op.capability is not None]
    own = [op for op in operations if op.capability is None]
    routes = []
    for op in [*engine, *own]:
        endpoint = Forward(op) if op.capability is not None else op.handler
        assert endpoint is not None, f"{op.method} {op.path} has neither capability nor handler"
        routes.append(Route(op.route_path or op.path, endpoint, methods=[op.method]))
    return routes


class DirectApp:
    """The outermost ASGI app: engine operations with exact paths in one layer, the rest
    through `app` (the Starlette app with its middleware)."""

    def __init__(
        self, app: ASGIApp, routes: list[BaseRoute], observer: Observer, check: KeyCheck | None
    ) -> None:
        self.app = app
        self.observer = observer
        self.check = check
        self.table: dict[tuple[str, str], tuple[Route, Forward]] = {}
        for route in routes:
            if not (isinstance(route, Route) and isinstance(route.app, Forward)):
                continue
            op = route.app.op
            if op.exact and op.target is not Target.RESPONSE:
                self.table[(op.path, op.method)] = (route, route.app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = (
            self.table.get((scope["path"], scope["method"])) if scope["type"] == "http" else None
        )
        if found is None:
            await self.app(scope, receive, send)
            return
        # An engine operation, run here (not in a method of its own: a coroutine less).
        route, endpoint = found
        scope["route"] = route  # as the router would set it
        op = endpoint.op
        record = RequestRecord.begin(scope, op, self.observer.ids)
        extra = stamps(scope, record)
        status = 500
        started = False

        def reply(message: Message) -> Awaitable[None]:
            # Hands back `send`'s own awaitable: no coroutine of its own per message.
            nonlocal status, started
            if message["type"] in _STARTS:
                status, started = message["status"], True
                message["headers"] = [*message["headers"], *extra, server_timing(record)]
            return send(message)

        try:
            refused = self.check.refusal(scope, record) if self.check is not None else None
            if refused is not None:
                raise refused
            # Forward's two steps, without its own coroutine (exact paths name no stored
            # response: the request's body names its chute). `reply` knows a whole reply's
            # message (the server's RESPONSE extension).
            call = await forward(record, scope, receive, op, whole=True)
            await call(scope, receive, reply)
        except ChuteboxError as exc:
            # Raised before the reply started: Forward sends nothing until the engine answers.
            await error_response(exc, record.dialect)(scope, receive, reply)
        except Exception:
            error = internal_error(record)
            if started:
                raise
            await error_response(error, record.dialect)(scope, receive, reply)
        finally:
            self.observer.answered(scope, record, status)
