"""The operation table: every route is declared once, and dispatch and the OpenAPI document
are both read from it."""

from __future__ import annotations

from starlette.routing import Route

from runtime.api.handlers.openapi import build_document
from runtime.api.relay.request import Forward
from runtime.api.route_table import ENGINE_OPERATIONS, OPERATIONS, exact_table
from runtime.api.routes import build_routes
from runtime.errors import Dialect


def test_every_operation_is_an_engine_route_or_has_a_handler() -> None:
    for op in OPERATIONS:
        assert (op.capability is None) != (op.handler is None), op.path
        if op.capability is not None and op.target.value == "model":
            assert op.request is not None, op.path


def test_the_router_and_the_document_come_from_the_table() -> None:
    routes = {(r.path, m) for r in build_routes() if isinstance(r, Route) for m in r.methods or ()}
    document = build_document([], metrics=False, public_models=False)["paths"]
    for op in OPERATIONS:
        assert ((op.route_path or op.path), op.method) in routes
        assert op.method.lower() in document[op.path]
    forwards = [r for r in build_routes() if isinstance(r.app, Forward)]
    assert [r.app.op for r in forwards] == list(ENGINE_OPERATIONS)


def test_only_parameterless_paths_are_dispatched_by_lookup() -> None:
    table = exact_table()
    assert ("/v1/messages", "POST") in table
    assert all("{" not in path for path, _ in table)
    assert ("/v1/responses/{response_id}", "GET") not in table


def test_the_messages_routes_answer_in_anthropics_dialect_and_document_it() -> None:
    document = build_document([], metrics=False, public_models=False)
    for op in OPERATIONS:
        anthropic = op.path.startswith("/v1/messages")
        assert (op.dialect is Dialect.ANTHROPIC) is anthropic, op.path
        error = document["paths"][op.path][op.method.lower()]["responses"].get("400")
        if error is not None:
            ref = error["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("AnthropicErrorResponse") is anthropic, op.path
