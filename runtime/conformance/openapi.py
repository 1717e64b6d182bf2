"""Optional: validate every JSON reply against a user-supplied OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from runtime.conformance.check import Session


class OpenAPIValidator:
    """Finds each reply's response schema (path, method, status) and validates the body.

    Needs `jsonschema` (pip install jsonschema); paths the document does not describe are
    left alone, since a Chutes server has routes OpenAI's spec does not.
    """

    def __init__(self, document: Path) -> None:
        try:
            import jsonschema
        except ImportError as exc:
            raise ValueError("--openapi needs jsonschema: pip install jsonschema") from exc
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        self.spec: dict[str, Any] = yaml.load(document.read_text(), Loader=loader)
        self.jsonschema = jsonschema
        self.servers_prefix = self._prefix()

    def _prefix(self) -> str:
        servers = self.spec.get("servers") or [{}]
        url = str(servers[0].get("url", ""))
        match = re.match(r"^[a-z]+://[^/]+(/.*)?$", url)
        return (match.group(1) or "") if match else ""

    def schema_for(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        relative = path.removeprefix(self.servers_prefix) if self.servers_prefix else path
        operation = (self.spec.get("paths", {}).get(relative) or {}).get(method.lower())
        if not operation:
            return None
        responses = operation.get("responses", {})
        response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
        if not response:
            return None
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        return schema if isinstance(schema, dict) else None

    def __call__(self, session: Session) -> list[str]:
        problems = []
        for exchange in session.exchanges:
            schema = self.schema_for(exchange.method, exchange.path, exchange.status)
            if schema is None or exchange.body is None:
                continue
            document = {**schema, "components": self.spec.get("components", {})}
            validator = self.jsonschema.Draft202012Validator(document)
            error = next(iter(validator.iter_errors(exchange.body)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "body"
                problems.append(f"{exchange.method} {exchange.path} {where}: {error.message[:200]}")
        return problems
