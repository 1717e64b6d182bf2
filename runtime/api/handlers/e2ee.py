"""Chutes' end-to-end encryption routes: `GET /e2e/instances/{chute}` and `POST /e2e/invoke`.

The gateway plays the instance: it holds each replica's key pair (`runtime.fleet.e2ee`),
opens a sealed request, and runs it through the same path as any other — the caller's key,
scope, quota and limits, the chute's admission, routing (to the replica it was sealed to, while
that one is ready), metering and cancellation — then seals the reply to the client's key
(`runtime.api.relay.sealed`). A bad nonce, instance, chute, path or blob is a 400 naming the
header or the body; nothing of a request's or reply's plaintext is logged.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from runtime.api.handlers.models import find_visible
from runtime.api.operation import Operation
from runtime.api.record import record_of
from runtime.api.relay.request import forward_json, open_gateway
from runtime.api.relay.sealed import SealedSend
from runtime.api.state import gateway_of, read_body
from runtime.errors import InvalidRequestError
from runtime.fleet.chutes import ChuteState
from runtime.protocol.e2ee import SealError, open_request


def sealed_paths(operations: tuple[Operation, ...]) -> dict[str, Operation]:
    """Where a sealed request may go: the engine routes that take a JSON body."""
    return {op.path: op for op in operations if op.capability and op.request and op.exact}


async def list_instances(request: Request) -> JSONResponse:
    gateway = gateway_of(request)
    chute = find_visible(request, request.path_params["chute"])
    instances = gateway.e2ee_instances()
    ready = [r.index for r in chute.replicas if r.state is ChuteState.READY]
    return JSONResponse(instances.listing(chute.name, ready))


def _header(request: Request, name: str) -> str:
    value = request.headers.get(name)
    if not value:
        raise InvalidRequestError(f"{name}: missing", param=name, code="missing_header")
    return value


class Invoke:
    """`POST /e2e/invoke`, a plain ASGI app: its reply is sent through the sealing `send`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _invoke(scope, receive, send)


async def _invoke(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    record = record_of(scope)
    gateway = open_gateway(record)
    instances = gateway.e2ee_instances()
    chute = find_visible(request, _header(request, "X-Chute-Id"), param="X-Chute-Id")
    path = _header(request, "X-E2E-Path")
    routes = sealed_paths(gateway.operations)
    op = routes.get(path)
    if op is None:
        raise InvalidRequestError(
            f"X-E2E-Path: {path!r} is not an inference route here; one of "
            + ", ".join(sorted(routes)),
            param="X-E2E-Path",
            code="unsupported_route",
        )
    instance = instances.redeem(
        _header(request, "X-E2E-Nonce"), _header(request, "X-Instance-Id"), chute.name
    )
    limit = gateway.limits.max_body_bytes
    blob = await read_body(record.headers, receive, limit)
    try:
        data, response_key = open_request(instance.keys.secret, blob, limit)
    except SealError as exc:
        raise InvalidRequestError(
            f"the sealed request does not open: {exc}", param="body", code="e2e_invalid_blob"
        ) from None
    if data.get("model") != chute.name and chute.adapter_of(data.get("model")) is None:
        raise InvalidRequestError(
            f"model: a request sealed to chute {chute.name} must name it", param="model"
        )
    record.operation = op
    record.sealed_to = (chute.name, instance.replica)
    call = await forward_json(gateway, record, op, data)
    await call(scope, receive, SealedSend(send, response_key))


invoke = Invoke()
