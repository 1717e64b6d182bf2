"""cords: a custom chute's own functions, called as their schemas say.

For each cord: a body built from its schema (required fields from their examples, defaults or
types; the defaults when nothing is required) → 2xx with the media type it declares; and a
body the schema refuses (a required field, or else the first one, of the wrong type) → 4xx,
never a 5xx. The cords come from chutebox's `GET /chutes` (called at `/chutes/{name}/...`), or,
against the SDK's own runner, from the chute file given as `--chute` (called at their paths).
"""

from __future__ import annotations

from typing import Any

from runtime.conformance.check import Check, Failed, Session, Skipped, expect

Cord = dict[str, Any]


def cords(session: Session) -> list[tuple[str, Cord]]:
    """(URL, cord) for every cord the target has."""
    if session.target.cords is not None:
        return [(c["path"], c) for c in session.target.cords]
    reply = session.request("GET", "/chutes")
    if reply.status_code != 200:
        raise Skipped(f"GET /chutes answered {reply.status_code}: give --chute FILE:ATTR to "
                      "check a chute's cords on the SDK's own runner")  # fmt: skip
    chutes = [chute for chute in reply.json()["data"] if chute.get("cords")]
    if not chutes:
        raise Skipped("no custom chute here")
    # A chute that is not ready answers 503 by design; its cords are left out and named.
    session.sent += [f"({c['name']} is {c.get('state')}: skipped)" for c in chutes
                     if c.get("state") != "ready"]  # fmt: skip
    found = [(c["url"], c) for chute in chutes if chute.get("state") == "ready"
             for c in chute["cords"]]  # fmt: skip
    if not found:
        raise Skipped("no custom chute here is ready")
    return found


def value_for(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A value the schema accepts: its example, default or first choice, else one of its type
    within its bounds."""
    schema = _resolved(schema, defs)
    for key in ("examples", "enum"):
        if schema.get(key):
            return schema[key][0]
    if "default" in schema:
        return schema["default"]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if _resolved(s, defs).get("type") != "null"]
        return value_for(options[0], defs) if options else None
    kind = schema.get("type")
    if kind == "string":
        text = "conformance"
        low, high = schema.get("minLength", 0), schema.get("maxLength", len(text))
        return (text * (low // len(text) + 1))[: max(low, min(high, len(text)))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = low + 1 if "exclusiveMinimum" in schema else max(low, 1)
        return min(value, schema.get("maximum", value))
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    return body_for(schema, defs) if kind == "object" else None


def body_for(schema: dict[str, Any] | None, defs: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = schema or {}
    defs = {**schema.get("$defs", {}), **(defs or {})}
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    body = {name: value_for(properties[name], defs) for name in required if name in properties}
    if not body:  # nothing required: the defaults (an empty body may read as no input at all)
        body = {name: value_for(p, defs) for name, p in properties.items()}
    return body


def refused_body(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The good body with one field of the wrong type; None when the schema names no field."""
    schema = schema or {}
    properties = schema.get("properties", {})
    if not properties:
        return None
    name = next((n for n in schema.get("required", []) if n in properties), next(iter(properties)))
    kind = _resolved(properties[name], schema.get("$defs", {})).get("type")
    wrong: Any = 12345 if kind in ("string", "object", "array", "boolean") else "not-a-number"
    return {**body_for(schema), name: wrong}


def _resolved(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _resolved(defs.get(ref.rsplit("/", 1)[-1], {}), defs)
    return schema


def accepts(session: Session) -> str:
    seen = []
    for url, cord in cords(session):
        body = None if cord["method"] == "GET" else body_for(cord.get("body_schema"))
        reply = session.request(cord["method"], url, body)
        got = f"{cord['method']} {url}: {reply.status_code} {reply.text[:200]}"
        expect(200 <= reply.status_code < 300, f"2xx from {cord['method']} {url}", got)
        declared = cord.get("output_content_type")
        media = reply.headers.get("content-type", "")
        if declared and not cord.get("stream"):
            expect(media.startswith(declared), f"{url} answering {declared}", media or "no type")
        seen.append(f"{url} {reply.status_code} {media or '-'}")
    return "; ".join(seen)


def refuses(session: Session) -> str:
    seen = []
    for url, cord in cords(session):
        body = refused_body(cord.get("body_schema"))
        if cord["method"] == "GET" or body is None:
            continue
        reply = session.request(cord["method"], url, body)
        if reply.status_code >= 500:
            raise Failed(f"a 4xx for {url} with {body}", f"{reply.status_code} {reply.text[:200]}")
        expect(400 <= reply.status_code < 500, f"a 4xx for {url}", reply.status_code)
        seen.append(f"{url} {reply.status_code}")
    if not seen:
        raise Skipped("no cord takes a body with named fields")
    return "; ".join(seen)


CHECKS = [
    Check("cords", "accepts", accepts, "each cord: a body from its schema → 2xx, its media type"),
    Check("cords", "refuses", refuses, "each cord: a body its schema refuses → 4xx, not 5xx"),
]
