"""Turn a request body into a validated model, or a 400 that names the parameter."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from runtime.errors import InvalidRequestError
from runtime.protocol import fastjson
from runtime.protocol.common import ParamError

M = TypeVar("M", bound=BaseModel)


def parse_body(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequestError("the request body is empty; send a JSON object")
    try:
        data = fastjson.loads(body)
    except ValueError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return data


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ParamError):
            steps = cause.param.split(".")
            loc = (*loc, *(int(p) if p.isdigit() else p for p in steps))
        param = param_path(data, loc)
        message = _message(err)
        raise InvalidRequestError(
            f"{param}: {message}" if param else message, param=param, code="invalid_value"
        ) from None


def param_path(data: Any, loc: tuple[int | str, ...]) -> str | None:
    """Render a pydantic location as `messages[0].role`, following the JSON itself.

    Pydantic locations carry union-member tags (`str`, `list[...]`) that are not part of the
    request; walking the JSON keeps only the steps that exist there.
    """
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            parts.append(f".{step}" if parts else step)
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            parts.append(f"[{step}]")
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str) and not _is_tag(step):
            # A required field that is missing: name it, then stop.
            parts.append(f".{step}" if parts else step)
            break
    return "".join(parts) or None


def _is_tag(step: str) -> bool:
    return any(ch in step for ch in "[]-,") or step in {"str", "int", "float", "bool", "list"}


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "missing":
        return "this parameter is required"
    if err["type"] == "extra_forbidden":
        return "unknown parameter"
    return msg
