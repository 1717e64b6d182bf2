"""The app's routes, derived from the operation table (`runtime.api.route_table`)."""

from __future__ import annotations

from starlette.routing import Route

from runtime.api.operation import Operation
from runtime.api.relay.request import Forward
from runtime.api.route_table import OPERATIONS


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
