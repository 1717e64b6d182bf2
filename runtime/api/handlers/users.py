"""Chutes' read routes for the calling key: its quotas, a chute's quota use, its usage.

`GET /users/me/quotas` lists the key's daily quotas with today's use; `GET
/users/me/quota_usage/{chute}` answers `{"quota", "used"}` as Chutes does (the chute by name
or id; `me` for the `"*"` pool; `"unlimited"` where the key has no quota);
`GET /users/me/usage` the key's usage per chute and UTC day, from the meter's store.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from runtime.access.identity import UNLIMITED, Identity
from runtime.api.record import record_of
from runtime.api.state import gateway_of
from runtime.errors import NotFoundError


def caller_of(request: Request) -> Identity:
    return record_of(request.scope).caller or UNLIMITED


async def my_quotas(request: Request) -> JSONResponse:
    access = gateway_of(request).access
    return JSONResponse(access.quotas(caller_of(request)))


async def my_quota_usage(request: Request) -> JSONResponse:
    gateway = gateway_of(request)
    asked = request.path_params["chute"]
    caller = caller_of(request)
    if asked == "me":
        return JSONResponse(gateway.access.quota_usage(caller, "me"))
    chute = next((c for c in gateway.chutes if asked in (c.name, c.chute_id)), None)
    if chute is None or not caller.may_call(chute.name):
        raise NotFoundError(f"no chute {asked!r} here", param="chute", code="chute_not_found")
    return JSONResponse(gateway.access.quota_usage(caller, chute.name))


async def my_usage(request: Request) -> JSONResponse:
    access = gateway_of(request).access
    caller = caller_of(request)
    chute = request.query_params.get("chute")
    rows = await access.meter.by_day(caller.name, [chute] if chute else None)
    return JSONResponse({"object": "list", "key": caller.name, "data": rows})
