"""Which request fields a chute takes: OpenAI's, joined with what its engine says it reads.

Hand-kept lists of an engine's extras drift the day the engine is upgraded. So the gateway asks
the engine: vLLM, SGLang and chutebox's own workers serve `/openapi.json`, whose request-body
schemas name every field each route reads. At readiness the supervisor reads it once per chute
(`EngineFields.from_openapi`); each request is then checked against the union of the fields
OpenAI defines for the route (the gateway's own request models) and the engine's:

- a field neither knows is refused under `strict_params` (a 400 naming it: typos stay caught);
- a field OpenAI defines that the engine does not name would be ignored by it, so it is dropped
  before the body goes to the engine (and listed once in the log at readiness);
- an engine that publishes no request schema for a route leaves that route unchecked.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from runtime.errors import InvalidRequestError

_MAX_REF_DEPTH = 16


def _resolve(document: Mapping[str, Any], schema: Any, depth: int = 0) -> list[dict[str, Any]]:
    """The object schemas a body schema stands for: refs followed, unions and allOf flattened."""
    if not isinstance(schema, dict) or depth > _MAX_REF_DEPTH:
        return []
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = document
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return _resolve(document, target, depth + 1)
    found = [schema] if "properties" in schema else []
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            found += _resolve(document, sub, depth + 1)
    return found


def body_fields(document: Mapping[str, Any], path: str) -> frozenset[str] | None:
    """The top-level fields of `POST path`'s JSON body in an OpenAPI document; None when the
    document does not describe that body."""
    paths = document.get("paths")
    operation = paths.get(path, {}).get("post") if isinstance(paths, dict) else None
    if not isinstance(operation, dict):
        return None
    content = (operation.get("requestBody") or {}).get("content") or {}
    schema = (content.get("application/json") or {}).get("schema")
    objects = _resolve(document, schema)
    if not objects:
        return None
    return frozenset(name for obj in objects for name in obj.get("properties") or {})


@dataclass(frozen=True)
class EngineFields:
    """Request fields per gateway path, as the engine's OpenAPI document names them."""

    by_path: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Every (METHOD, path) the document lists; None when the engine published no document,
    # and then its backend's declared capabilities stand for it.
    routes: frozenset[tuple[str, str]] | None = None

    @classmethod
    def from_openapi(cls, document: Any) -> EngineFields:
        """Every POST route's body fields the document describes, and every route it lists."""
        paths = document.get("paths") if isinstance(document, dict) else None
        if not isinstance(paths, dict):
            return cls()
        found = {p: fields for p in paths if (fields := body_fields(document, p)) is not None}
        routes = frozenset(
            (method.upper(), path)
            for path, item in paths.items()
            if isinstance(item, dict)
            for method in item
            if method in ("get", "post", "put", "delete", "patch")
        )
        return cls(found, routes)

    def known(self, path: str) -> frozenset[str] | None:
        return self.by_path.get(path)


@functools.cache
def openai_fields(schema: type[BaseModel]) -> frozenset[str]:
    """The fields the gateway's request model for a route declares: OpenAI's for that route."""
    return frozenset(schema.model_fields)


def screen(
    data: dict[str, Any], openai: frozenset[str], engine: frozenset[str], strict: bool
) -> None:
    """In one pass: drop the OpenAI fields the engine does not read (it would ignore them, or
    refuse them), and when `strict`, refuse a field neither knows, as OpenAI refuses unknown
    ones (a 400 naming it)."""
    ignored: list[str] = []
    for name in data:
        if name in engine:
            continue
        if name in openai:
            ignored.append(name)
        elif strict:
            raise InvalidRequestError(
                f"Unrecognized request argument supplied: {name}",
                param=name,
                code="unknown_parameter",
            )
    for name in ignored:
        del data[name]
