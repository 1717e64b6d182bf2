"""The path every engine-bound request takes: read, validate, route, check, rewrite, admit."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from runtime import fastjson
from runtime.chutes import Chute, Lease
from runtime.errors import EngineUnavailableError, InvalidRequestError
from runtime.fields import openai_fields, screen
from runtime.gateway import Gateway, Limits, header, read_body
from runtime.protocol.validation import parse_body, validate
from runtime.rewrite import rewrite_request, wants_thinking
from runtime.streaming import EngineCall


def screen_fields(
    data: dict[str, Any], chute: Chute, path: str, schema: type[BaseModel], strict: bool
) -> None:
    """Refuse fields neither OpenAI nor the engine knows (when strict), and drop OpenAI fields
    the engine does not read. Unchecked when the engine published nothing for this route."""
    engine = chute.fields.known(path) if chute.fields is not None else None
    if engine is not None:
        screen(data, openai_fields(schema), engine, strict)


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
    scope: Scope, receive: Receive, schema: type[BaseModel], capability: str, *, chat: bool
) -> EngineCall:
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
    screen_fields(data, chute, path, schema, gateway.strict_params)
    chute.require_ready()
    thinking = thinking or wants_thinking(header(scope, b"x-enable-thinking"))
    body = rewrite_request(data, chute.name, gateway.rules, thinking=thinking, chat=chat)
    abort = None
    field = chute.backend.request_id_field
    if field is not None:
        # Engines that abort by id learn it here; a client's own id is kept.
        body.setdefault(field, state["invocation_id"])
        abort = chute.backend.abort_call(str(body[field]))
    await chute.admission.acquire()
    try:
        lease = Lease(chute)  # not ready after a wait in the queue (a restart): 503
    except EngineUnavailableError:
        chute.admission.release()
        raise

    def done() -> None:
        lease.release()
        chute.admission.release()

    return EngineCall(
        gateway.upstream,
        lease,
        path,
        fastjson.dumps(body),
        headers=chute.admission.headers,
        on_done=done,
        abort=abort,
        chute=chute.name,
        metrics=gateway.metrics,
        keepalive=gateway.keepalive,
        shutdown=gateway.chutes,
    )


class Forward:
    """An engine-bound route as a plain ASGI app.

    Starlette wraps function endpoints in a request/response adapter with an exception layer
    of its own; the relay path skips both (the app-wide exception middleware still answers
    every ChuteboxError in the one envelope).
    """

    def __init__(self, schema: type[BaseModel], capability: str, *, chat: bool) -> None:
        self.schema = schema
        self.capability = capability
        self.chat = chat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = await forward(scope, receive, self.schema, self.capability, chat=self.chat)
        await call(scope, receive, send)
