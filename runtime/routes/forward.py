"""The path every engine-bound request takes: read, validate, route, check, rewrite, admit."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from runtime import fastjson
from runtime.chutes import Chute
from runtime.errors import EngineUnavailableError, InvalidRequestError
from runtime.gateway import Gateway, Limits, header, read_body
from runtime.protocol.validation import parse_body, validate
from runtime.rewrite import rewrite_request, wants_thinking
from runtime.streaming import EngineCall


def check_fields(
    data: dict[str, Any], schema: type[BaseModel], accepted: frozenset[str] | None
) -> None:
    """Refuse fields neither our schema nor the engine knows, as OpenAI does."""
    if accepted is None:
        return
    known = schema.__pydantic_fields__
    for name in data:
        if name not in known and name not in accepted:
            raise InvalidRequestError(
                f"Unrecognized request argument supplied: {name}",
                param=name,
                code="unknown_parameter",
            )


def check_limits(data: dict[str, Any], limits: Limits) -> None:
    """Limits a deployment sets below what the API allows; the schemas checked the types."""
    n = data.get("n")
    if isinstance(n, int) and n > limits.max_n:
        raise InvalidRequestError(
            f"n: at most {limits.max_n} choices per request here, got {n}",
            param="n", code="limit_exceeded",
        )  # fmt: skip
    messages = data.get("messages")
    if isinstance(messages, list) and len(messages) > limits.max_messages:
        raise InvalidRequestError(
            f"messages: at most {limits.max_messages} messages per request, got {len(messages)}",
            param="messages", code="limit_exceeded",
        )  # fmt: skip


def require_capability(chute: Chute, capability: str, path: str) -> None:
    if capability not in chute.backend.capabilities:
        raise InvalidRequestError(
            f"model {chute.name} (engine {chute.backend.name}) does not serve {path}",
            param="model",
            code="unsupported_route",
        )


async def forward(
    scope: Scope, receive: Receive, schema: type[BaseModel], capability: str, *, chat: bool,
    admit: bool = True,
) -> EngineCall:  # fmt: skip
    state = scope["state"]
    gateway: Gateway = state["gateway"]
    if gateway.chutes.draining:
        raise EngineUnavailableError(
            "the gateway is shutting down; retry against another instance",
            headers={"Retry-After": "5"},
        )
    data = parse_body(await read_body(scope, receive, gateway.limits.max_body_bytes))
    validate(schema, data)
    check_limits(data, gateway.limits)
    if data.get("model") is None:  # only the image routes' schemas allow this
        chute, thinking = gateway.chutes.only_with(capability), False
    else:
        chute, thinking = gateway.chutes.resolve(data["model"])
    path = scope["path"]
    state["chute"] = chute.name
    require_capability(chute, capability, path)
    if gateway.strict_params:
        check_fields(data, schema, chute.backend.accepted_fields(capability))
    chute.require_ready()
    thinking = thinking or wants_thinking(header(scope, b"x-enable-thinking"))
    body = rewrite_request(data, chute.name, gateway.rules, thinking=thinking, chat=chat)
    abort = None
    field = chute.backend.request_id_field
    if field is not None:
        # Engines that abort by id learn it here; a client's own id is kept.
        body.setdefault(field, state["invocation_id"])
        abort = chute.backend.abort_call(str(body[field]))
    if admit and await chute.admission.acquire():
        try:
            chute.require_ready()  # it waited in the queue: maybe through a restart
        except EngineUnavailableError:
            chute.admission.release()
            raise
    replica, endpoint = chute.pick()  # cannot fail now: readiness was checked in this tick

    def done() -> None:
        replica.outstanding -= 1
        if admit:
            chute.admission.release()

    return EngineCall(
        gateway.upstream,
        endpoint,
        path,
        fastjson.dumps(body),
        headers=chute.admission.headers,
        on_done=done,
        abort=abort,
        chute=chute.name,
        metrics=gateway.metrics,
        keepalive=gateway.keepalive,
    )


class Forward:
    """An engine-bound route as a plain ASGI app.

    Starlette wraps function endpoints in a request/response adapter with an exception layer
    of its own; the relay path skips both (the app-wide exception middleware still answers
    every ChuteboxError in the one envelope).
    """

    def __init__(
        self, schema: type[BaseModel], capability: str, *, chat: bool, admit: bool = True
    ) -> None:
        self.schema = schema
        self.capability = capability
        self.chat = chat
        self.admit = admit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = await forward(scope, receive, self.schema, self.capability, chat=self.chat,
                             admit=self.admit)  # fmt: skip
        await call(scope, receive, send)
