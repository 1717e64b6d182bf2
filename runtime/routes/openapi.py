"""`GET /openapi.json`: the document `runtime.openapi` generates, built once per app."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.gateway import gateway_of
from runtime.openapi import build_document


def openapi_route(*, metrics: bool, public_models: bool) -> Route:
    rendered: list[Response] = []

    async def openapi(request: Request) -> Response:
        if not rendered:
            names = [c.name for c in gateway_of(request).chutes]
            document = build_document(names, metrics=metrics, public_models=public_models)
            rendered.append(JSONResponse(document))
        return rendered[0]

    return Route("/openapi.json", openapi, methods=["GET"])
