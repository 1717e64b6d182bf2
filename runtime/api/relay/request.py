"""The path every engine-bound request takes: read, validate, route, check, rewrite, admit.

One `Forward` per engine operation (`runtime.api.route_table`); what differs between routes — the
schema, the capability, the rewrites, whether it takes a slot, how its chute is found — is
read from the operation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from time import perf_counter
from typing import Any

from starlette.types import Receive, Scope, Send

from runtime.api.metering import admit_caller
from runtime.api.operation import Operation, Rewrite, Target, served_paths
from runtime.api.record import RequestRecord, record_of
from runtime.api.relay.adapters import hold_adapter
from runtime.api.relay.migration import MigrationPlan, plan_migration
from runtime.api.relay.reply import EngineCall
from runtime.api.state import AppState, Limits, read_body
from runtime.config.settings import parse_duration
from runtime.errors import (
    CapacityError,
    EngineUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
)
from runtime.fleet.backend import IMAGES, RESPONSES, AbortCall
from runtime.fleet.chutes import Chute, Lease
from runtime.fleet.routing.exact import TIMEOUT, read_tokens, tokenize_body
from runtime.fleet.routing.policy import Prompt
from runtime.fleet.stored import Holder
from runtime.http.engine_client import Endpoint
from runtime.protocol import fastjson
from runtime.protocol.fields import openai_fields, screen
from runtime.protocol.rewrite import rewrite_request, wants_thinking
from runtime.protocol.validation import parse_body, validate

# What makes a model list try its next chute: the one before cannot serve this caller now
# (at capacity, not ready, not this key's, or its quota spent). A key over its per-minute
# limits is over them for every chute.
MODEL_LIST_SKIPS = (
    CapacityError,
    EngineUnavailableError,
    PermissionDeniedError,
    PaymentRequiredError,
)


def screen_fields(
    data: dict[str, Any], engine: frozenset[str], op: Operation, strict: bool
) -> None:
    """Refuse fields neither the API nor the engine knows (when strict), and drop the API's
    fields the engine does not read (`engine`: the fields it published for this route)."""
    if op.request is not None:
        screen(data, openai_fields(op.request), engine, strict)


def check_limits(data: dict[str, Any], limits: Limits) -> None:
    """Limits a deployment sets below what the API allows; the schemas checked the types."""
    n = data.get("n")
    if isinstance(n, int) and n > limits.max_n:
        raise InvalidRequestError(
            f"n: at most {limits.max_n} choices per request here, got {n}",
            param="n",
            code="limit_exceeded",
        )
    messages = data.get("messages")
    if isinstance(messages, list) and len(messages) > limits.max_messages:
        raise InvalidRequestError(
            f"messages: at most {limits.max_messages} messages per request, got {len(messages)}",
            param="messages",
            code="limit_exceeded",
        )


def keep_alive_of(value: Any) -> float | None:
    """A request's `keep_alive` as Ollama takes it: seconds, or a duration ("5m"); negative
    is for ever (None)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return None if value < 0 else float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise InvalidRequestError(f"keep_alive: {exc}", param="keep_alive") from None
    raise InvalidRequestError(
        'keep_alive: a number of seconds or a duration such as "5m"', param="keep_alive"
    )


def unsupported(
    chute: Chute, op: Operation, operations: tuple[Operation, ...]
) -> InvalidRequestError:
    """The error for a chute whose engine does not serve the route (`op.served_by`), naming
    those of the app's `operations` it serves."""
    offered = served_paths(chute, operations)
    return InvalidRequestError(
        f"model {chute.name} (engine {chute.backend.name}) does not serve {op.path}; "
        f"it serves {', '.join(offered) or 'nothing yet'}",
        param="model",
        code="unsupported_route",
    )


def open_gateway(record: RequestRecord) -> AppState:
    """The gateway the request came to, refusing it (503) while the gateway drains."""
    gateway = record.gateway
    assert gateway is not None, "the app's lifespan has not run"
    if gateway.chutes.draining:
        raise EngineUnavailableError(
            "the gateway is shutting down; retry against another instance",
            headers={"Retry-After": "5"},
        )
    return gateway


async def forward(
    record: RequestRecord, scope: Scope, receive: Receive, op: Operation
) -> EngineCall:
    """The engine call for a request whose body names its `model`."""
    gateway = open_gateway(record)
    data = parse_body(await read_body(record.headers, receive, gateway.limits.max_body_bytes))
    return await forward_json(gateway, record, op, data)


async def forward_json(
    gateway: AppState, record: RequestRecord, op: Operation, data: dict[str, Any]
) -> EngineCall:
    """The engine call for the request's JSON `data` (read from its body, or opened from an
    E2EE blob), checked against the operation's schema."""
    assert op.request is not None and op.capability is not None
    validate(op.request, data)  # the body relayed is the JSON itself, rewritten
    check_limits(data, gateway.limits)
    if data.get("model") is None:  # only the image routes' schemas allow this
        candidates = [(gateway.chutes.only_with(op.capability), False)]
    else:
        candidates = gateway.chutes.candidates(data["model"])
    for chute, thinking in candidates[:-1]:  # a model list: the next when one cannot serve
        try:
            return await _forward_to(gateway, record, op, dict(data), chute, thinking)
        except MODEL_LIST_SKIPS as exc:
            log.info("[%s] %s; the model list goes on", chute.name, exc.message)
    chute, thinking = candidates[-1]
    return await _forward_to(gateway, record, op, data, chute, thinking)


async def _forward_to(
    gateway: AppState,
    record: RequestRecord,
    op: Operation,
    data: dict[str, Any],
    chute: Chute,
    thinking: bool,
) -> EngineCall:
    """The engine call of `chute` for the request `data` (which the engine's fields trim)."""
    assert op.capability is not None
    record.chute = chute.name
    record.model = data.get("model") or chute.name
    if not op.served_by(chute):
        raise unsupported(chute, op, gateway.operations)
    if chute.on_demand and "keep_alive" in data:  # Ollama's: how long to stay loaded after
        chute.keep_alive = keep_alive_of(data.pop("keep_alive"))
    engine_fields = chute.fields.known(op.path) if chute.fields is not None else None
    if engine_fields is not None:  # unchecked when the engine published nothing here
        screen_fields(data, engine_fields, op, gateway.strict_params)
    if op.capability == IMAGES:  # metered: images, and denoising steps over all of them
        record.images = data.get("n", 1)
        record.steps = record.images * data.get("num_inference_steps", 25)
    admit_caller(gateway.access, record, chute.name, data)
    record.load_wait = await gateway.chutes.ensure_loaded(chute) or None
    chute.require_ready()
    if not thinking:
        header = record.headers.get(b"x-enable-thinking")
        thinking = header is not None and wants_thinking(header)
    adapter = chute.adapter_of(data.get("model"))
    body = rewrite_request(
        data,
        f"{chute.name}:{adapter}" if adapter else chute.engine_model,
        gateway.rules,
        thinking=thinking,
        chat=op.rewrite is Rewrite.CHAT,
        usage_option=op.rewrite is not Rewrite.MODEL,
    )
    abort = None
    field = chute.backend.request_id_field
    if field is not None and (engine_fields is None or field in engine_fields):
        # Engines that abort by id learn it here, on the routes whose schema takes the id
        # field; a client's own id is kept.
        body.setdefault(field, record.invocation_id)
        abort = chute.backend.abort_call(str(body[field]))
    prefer = None
    if record.sealed_to is not None and record.sealed_to[0] == chute.name:
        prefer = record.sealed_to[1]  # the replica whose key an E2EE request was sealed to
    elif op.capability == RESPONSES and isinstance(data.get("previous_response_id"), str):
        # The response it continues lives in one replica's memory.
        held = gateway.stored.find(data["previous_response_id"])
        prefer = held.replica if held is not None and held.chute == chute.name else None
    prompt, refine = None, None
    if prefer is None and len(chute.replicas) > 1:
        prompt = chute.router.prompt(data, op.capability, data.get("model"))
        # A salted prompt's blocks are keyed by more than its tokens
        # (runtime.fleet.routing.kv_events).
        if chute.router.kv and "cache_salt" not in data:
            refine = engine_tokens(gateway, chute, body, op.capability)
    migration = plan_migration(chute, op, body)  # (may ask the engine for token ids)
    payload = fastjson.dumps(body)  # before the slot: from the lease on, the call gives it back
    asked = perf_counter()
    lease = await admit(chute, op.slot, prefer, prompt, refine)
    record.queue_time = perf_counter() - asked
    if adapter is not None:
        try:
            await hold_adapter(gateway.upstream, lease, chute, adapter)
        except BaseException:
            lease.release()
            raise
    on_reply = None
    if op.capability == RESPONSES and data.get("store") is not False:
        on_reply = _remember(gateway, chute, lease)
    return _call(
        gateway,
        record,
        lease,
        op,
        op.path,
        payload,
        abort=abort,
        on_reply=on_reply,
        migration=migration,
        adapter=adapter,
    )


async def forward_stored(record: RequestRecord, scope: Scope, op: Operation) -> EngineCall:
    """The engine call for a stored response named in the path (retrieve, cancel)."""
    gateway = open_gateway(record)
    response_id = scope["path_params"]["response_id"]
    held = gateway.stored.find(response_id)
    chute = gateway.chutes.get(held.chute) if held is not None else None
    if held is None or chute is None:
        raise NotFoundError(
            f"response {response_id} not found here: this gateway routes a stored response "
            "to the engine that made it, and remembers the most recent ones",
            param="response_id",
            code="response_not_found",
        )
    record.chute = chute.name
    chute.require_ready()
    lease = await admit(chute, op.slot, held.replica)
    path = scope["path"]
    if scope.get("query_string"):
        path += "?" + scope["query_string"].decode("latin-1")
    body = b"" if op.method == "POST" else None
    # A stored response repeats its usage; it was counted when it was made.
    return _call(gateway, record, lease, op, path, body, count_usage=False)


log = logging.getLogger("chutebox.routing")
Refine = Callable[[Prompt], Awaitable[Prompt]]


def engine_tokens(gateway: AppState, chute: Chute, body: dict[str, Any], capability: str) -> Refine:
    """Adds to a prompt the engine's token ids of the rewritten body, for matching the
    engines' KV-cache events (kept as it is when they cannot be had)."""

    async def refine(prompt: Prompt) -> Prompt:
        accepted = chute.fields.known("/tokenize") if chute.fields is not None else None
        request = tokenize_body(body, capability, accepted) if accepted else None
        endpoint = chute.lookup_endpoint()
        if endpoint is None or request is None:
            return prompt
        try:
            tokens = await asyncio.wait_for(_tokenize(gateway, endpoint, request), TIMEOUT)
        except Exception as exc:  # an engine busy or gone: the text index decides
            log.debug("[%s] tokenize for routing failed: %r", chute.name, exc)
            return prompt
        return replace(prompt, tokens=tokens) if tokens else prompt

    return refine


async def _tokenize(gateway: AppState, endpoint: Endpoint, request: bytes) -> list[int] | None:
    response = await gateway.upstream.send(endpoint, "POST", "/tokenize", request)
    try:
        reply = await response.read()
    except BaseException:
        response.close()
        raise
    response.release()
    return read_tokens(reply) if response.status == 200 else None


async def admit(
    chute: Chute,
    slot: bool,
    prefer: int | None = None,
    prompt: Prompt | None = None,
    refine: Refine | None = None,
) -> Lease:
    """A concurrency slot when the route takes one (`slot`), then a replica to send to.
    `refine` completes the prompt once the slot is held: a request refused for lack of one
    costs the engines nothing."""
    if slot and not chute.admission.take():
        await chute.admission.acquire()
    try:
        if prompt is not None and refine is not None:
            prompt = await refine(prompt)
        # Not ready after a wait in the queue (a restart): 503. The lease gives the slot back.
        return Lease(chute, prefer, prompt, slot)
    except BaseException:
        if slot:
            chute.admission.release()
        raise


def _remember(gateway: AppState, chute: Chute, lease: Lease) -> Callable[[bytes], None]:
    def remember(data: bytes) -> None:
        gateway.stored.remember(data, Holder(chute.name, lease.replica.index))

    return remember


def _call(
    gateway: AppState,
    record: RequestRecord,
    lease: Lease,
    op: Operation,
    path: str,
    body: bytes | None,
    *,
    abort: AbortCall | None = None,
    on_reply: Callable[[bytes], None] | None = None,
    count_usage: bool = True,
    migration: MigrationPlan | None = None,
    adapter: str | None = None,
) -> EngineCall:
    return EngineCall(
        gateway.upstream,
        lease,
        path,
        body,
        shutdown=gateway.chutes,
        record=record,
        method=op.method,
        metrics=gateway.metrics,
        keepalive=gateway.keepalive,
        abort=abort,
        on_reply=on_reply,
        count_usage=count_usage,
        migration=migration,
        adapter=adapter,
    )


class Forward:
    """An engine-bound route as a plain ASGI app.

    Starlette wraps function endpoints in a request/response adapter with an exception layer
    of its own; the relay path skips both (the app-wide exception middleware still answers
    every ChuteboxError in the request's error dialect).
    """

    def __init__(self, op: Operation) -> None:
        self.op = op

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        op = self.op
        record = record_of(scope)
        record.operation = op  # routes with path parameters arrive unnamed
        if op.target is Target.RESPONSE:
            call = await forward_stored(record, scope, op)
        else:
            call = await forward(record, scope, receive, op)
        await call(scope, receive, send)
