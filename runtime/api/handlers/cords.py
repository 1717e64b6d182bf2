"""A custom chute's cords, reached as the platform reaches them.

- `/chutes/{chute}/{path}`, the chute named by its name or its id (the platform's
  `https://api.chutes.ai/chutes/{chute-id}/{path}`);
- a `Host` of `{username}-{name}.<anything>` (the platform's `https://{username}-{name}.chutes.ai`),
  which `runtime.api.middleware.chute_host` turns into the form above;
- the bare `/{path}` when exactly one chute has a cord there; when several do, a 400 naming
  them and the form that picks one.

Every cord's public path is checked against the gateway's own routes when the app is built: a
cord may not shadow one.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from runtime.api.metering import admit_caller
from runtime.api.record import record_of
from runtime.api.relay.cord import CordCall
from runtime.api.relay.request import admit, open_gateway
from runtime.api.state import read_body
from runtime.errors import ConfigError, InvalidRequestError, MethodNotAllowedError, NotFoundError
from runtime.fleet.chutes import Chute, ChuteSet
from runtime.fleet.cords import METHODS, Cord

PREFIX = "/chutes/{chute}/{path:path}"


def custom_chutes(chutes: Iterable[Chute]) -> list[Chute]:
    return [chute for chute in chutes if chute.code is not None]


def find_chute(chutes: ChuteSet, name_or_id: str) -> Chute:
    for chute in chutes:
        if name_or_id in (chute.name, chute.chute_id):
            return chute
    raise NotFoundError(f"no chute {name_or_id!r} here", param="chute", code="chute_not_found")


def find_cord(chute: Chute, path: str, method: str) -> Cord:
    assert chute.code is not None
    cord = chute.code.find(path, method)
    if cord is not None:
        return cord
    others = [c for c in chute.code.cords if c.path == path]
    if others:
        raise MethodNotAllowedError(f"{method} is not allowed on {path} of chute {chute.name}; "
                                    f"it takes {', '.join(c.method for c in others)}")  # fmt: skip
    offered = ", ".join(f"{c.method} {c.path}" for c in chute.code.cords)
    raise NotFoundError(f"chute {chute.name} has no cord {method} {path}; it has {offered}",
                        code="cord_not_found")  # fmt: skip


class CordEndpoint:
    """The ASGI endpoint of cord calls: by chute and path, or (`bare`) by path alone."""

    def __init__(self, bare: str | None = None) -> None:
        self.bare = bare

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = record_of(scope)
        gateway = open_gateway(record)
        method = scope["method"]
        if self.bare is None:
            params = scope["path_params"]
            chute = find_chute(gateway.chutes, params["chute"])
            if chute.code is None:
                raise NotFoundError(f"{chute.name} is a model, not a custom chute: call it at "
                                    "/v1/...", code="not_a_custom_chute")  # fmt: skip
            path = "/" + params["path"]
        else:
            chute, path = self._only(gateway.chutes, method), self.bare
        cord = find_cord(chute, path, method)
        record.chute = chute.name
        body = await read_body(record.headers, receive, gateway.limits.max_body_bytes)
        admit_caller(gateway.access, record, chute.name, None)
        record.load_wait = await gateway.chutes.ensure_loaded(chute) or None
        chute.require_ready()
        lease = await admit(chute, slot=True)
        target = cord.path
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        call = CordCall(gateway.upstream, lease, method, target, body if body else None,
                        record=record, chutes=gateway.chutes,
                        metrics=gateway.metrics)  # fmt: skip
        await call(scope, receive, send)

    def _only(self, chutes: ChuteSet, method: str) -> Chute:
        assert self.bare is not None
        having = [c for c in custom_chutes(chutes) if c.code and c.code.find(self.bare, method)]
        if len(having) == 1:
            return having[0]
        if not having:
            raise MethodNotAllowedError(f"{method} is not allowed on {self.bare}")
        names = ", ".join(c.name for c in having)
        raise InvalidRequestError(
            f"chutes {names} all have a cord at {method} {self.bare}: call one at "
            f"/chutes/{{name}}{self.bare}",
            code="ambiguous_cord",
        )


def cord_routes(chutes: Iterable[Chute], taken: Iterable[str]) -> list[Route]:
    """The routes of every custom chute's cords; ConfigError when a cord's path is one of the
    gateway's own (`taken`) or would be read as the `/chutes/...` form."""
    custom = custom_chutes(chutes)
    if not custom:
        return []
    own = set(taken)
    bare: dict[str, set[str]] = {}
    for chute in custom:
        assert chute.code is not None
        for cord in chute.code.cords:
            if cord.path in own or cord.path == "/chutes" or cord.path.startswith("/chutes/"):
                raise ConfigError(f"chute {chute.name}: its cord {cord.function} at "
                                  f"{cord.path} would shadow the gateway's own route")  # fmt: skip
            bare.setdefault(cord.path, set()).add(cord.method)
    routes = [Route(PREFIX, CordEndpoint(), methods=sorted(METHODS))]
    routes += [Route(path, CordEndpoint(bare=path), methods=sorted(methods))
               for path, methods in sorted(bare.items())]  # fmt: skip
    return routes
