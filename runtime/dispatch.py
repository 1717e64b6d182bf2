"""Routes derived from the operation table, and the direct path for the engine routes.

The relay routes carry nearly all the load; going through Starlette's exception middleware
and router costs each request a layer of wrappers and a regex per route tried (issue 11's
profile). The outermost middleware already looked the request's operation up by its exact
(path, method); an engine operation found there is served at once. Everything else — the
gateway's own routes, routes with path parameters, unknown paths and methods — goes on to
the router built from the same table.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.envelope import error_response
from runtime.errors import ChuteboxError
from runtime.forward import Forward
from runtime.operation import Operation
from runtime.operations import OPERATIONS
from runtime.record import record_of


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


class DirectRoutes:
    """Pure ASGI middleware: engine operations with exact paths, with the one error envelope."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.table: dict[tuple[str, str], Route] = {}
        for route in routes:
            if isinstance(route, Route) and isinstance(route.app, Forward) and route.app.op.exact:
                self.table[(route.app.op.path, route.app.op.method)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = record_of(scope)
        op = record.operation
        route = self.table.get((op.path, op.method)) if op is not None else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # as the router would set it
        try:
            await route.app(scope, receive, send)
        except ChuteboxError as exc:
            # Raised before the reply started: Forward sends nothing until the engine answers.
            await error_response(exc, record.dialect)(scope, receive, send)
