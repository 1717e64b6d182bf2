"""Engine routes dispatched straight from an exact (path, method) table.

The relay routes carry nearly all the load; going through Starlette's exception middleware
and router costs each request a layer of wrappers and a regex per route tried (issue 11's
profile). They have fixed paths, so a dict lookup finds them; everything else, and every
method these routes do not take, goes on to the router as before.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.envelope import error_response
from runtime.errors import ChuteboxError
from runtime.routes.forward import Forward


class DirectRoutes:
    """Pure ASGI middleware: Forward routes by exact match, with the one error envelope."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.table: dict[tuple[str, str], Route] = {}
        for route in routes:
            if isinstance(route, Route) and isinstance(route.app, Forward):
                for method in route.methods or ():
                    self.table[(route.path, method)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self.table.get((scope["path"], scope["method"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # as the router would set it: metrics label by it
        try:
            await route.app(scope, receive, send)
        except ChuteboxError as exc:
            # Raised before the reply started: Forward sends nothing until the engine answers.
            await error_response(exc)(scope, receive, send)
