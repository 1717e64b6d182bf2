"""One exception tree, one status table, one error envelope.

Handlers raise; `runtime.api.envelope.error_response` renders. The envelope is readable by OpenAI
clients (`error.message`, `error.type`, `error.param`, `error.code`) and by Chutes clients,
which read FastAPI's `detail`. Nothing here imports Starlette: the engines' worker servers and
the backend contract use these errors too.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any


class ChuteboxError(Exception):
    """Base of every error chutebox reports to a client.

    `status_code`, `type` and `code` come from the subclass; `param` names the request field
    at fault when there is one. `headers` are added to the HTTP reply (e.g. `Retry-After`).
    """

    status_code = 500
    type = "server_error"
    code: str | None = None
    # Fields Chutes' clients read beside the message: `detail` becomes an object then.
    details: Mapping[str, Any] | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class InvalidRequestError(ChuteboxError):
    """The request is malformed or a parameter is out of range (400)."""

    status_code = 400
    type = "invalid_request_error"


class AuthenticationError(ChuteboxError):
    """No API key, or a key that is not configured (401)."""

    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PaymentRequiredError(ChuteboxError):
    """The key's daily quota for this chute is spent (402, as Chutes answers it): the reply's
    `detail` carries `quota_reset_timestamp`, the next UTC midnight."""

    status_code = 402
    type = "insufficient_quota"
    code = "quota_exceeded"

    def __init__(self, message: str, *, reset: str) -> None:
        super().__init__(message)
        self.details = {"quota_reset_timestamp": reset}


class PermissionDeniedError(ChuteboxError):
    """The key may not call this chute (403)."""

    status_code = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFoundError(ChuteboxError):
    """The route or the model does not exist (404)."""

    status_code = 404
    type = "not_found_error"


class MethodNotAllowedError(ChuteboxError):
    """The route exists but not for this HTTP method (405)."""

    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLargeError(ChuteboxError):
    """The request body is larger than the gateway accepts (413)."""

    status_code = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimitedError(ChuteboxError):
    """The key is over its requests or tokens per minute (429, with `Retry-After`)."""

    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class CapacityError(ChuteboxError):
    """The chute is at its concurrency limit (429, with `Retry-After`)."""

    status_code = 429
    type = "rate_limit_error"
    code = "concurrency_limit_exceeded"


class EngineUnavailableError(ChuteboxError):
    """The chute's engine is loading, restarting, failed or draining (503)."""

    status_code = 503
    type = "service_unavailable_error"
    code = "engine_unavailable"


class GatewayStoppingError(EngineUnavailableError):
    """The gateway is stopping now and ended this request (503; another instance may serve)."""

    def __init__(self) -> None:
        super().__init__(
            "the gateway is stopping; retry against another instance",
            headers={"Retry-After": "5"},
        )


class EngineDownError(EngineUnavailableError):
    """The engine refused or reset the connection before any byte of a reply: it is down.

    Nothing of the request reached it, so the request may go to another replica; with none
    left the client gets this 503 with `Retry-After`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "5"})


class UpstreamError(ChuteboxError):
    """The engine broke off its reply, sent bad HTTP or was silent too long (502)."""

    status_code = 502
    type = "upstream_error"
    code = "engine_unreachable"


class EngineLostError(UpstreamError):
    """The engine closed the connection after the request reached it, before its reply was
    complete: it died or was restarted under the request (a chat or completions request is
    then moved to another replica, `migration_limit`)."""


class EngineError(ChuteboxError):
    """An error the engine itself answered; its status and message reach the client."""

    def __init__(
        self, status_code: int, message: str, *, type: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code
        self.type = type or _type_for_status(status_code)


class ConfigError(Exception):
    """Settings or a chute description are invalid; raised before anything starts."""


def _type_for_status(status: int) -> str:
    if status == 401:
        return AuthenticationError.type
    if status == 404:
        return NotFoundError.type
    if status == 429:
        return CapacityError.type
    return "invalid_request_error" if status < 500 else "server_error"


def envelope(exc: ChuteboxError) -> dict[str, Any]:
    detail: Any = exc.message if exc.details is None else {"message": exc.message, **exc.details}
    return {
        "error": {
            "message": exc.message,
            "type": exc.type,
            "param": exc.param,
            "code": exc.code,
        },
        "detail": detail,
    }


def sse_error_event(exc: ChuteboxError) -> bytes:
    """The frame sent when a stream fails after its headers went out."""
    return b"data: " + json.dumps({"error": envelope(exc)["error"]}).encode() + b"\n\n"


# Anthropic's error types by status (its API reference, "Errors"); 503 is its overloaded.
ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
    429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error",
}  # fmt: skip


def anthropic_envelope(exc: ChuteboxError) -> dict[str, Any]:
    """Anthropic's error body; its clients read `error.type` and `error.message`."""
    kind = ANTHROPIC_TYPES.get(exc.status_code)
    if kind is None:
        kind = "api_error" if exc.status_code >= 500 else "invalid_request_error"
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


class Dialect(enum.Enum):
    """Whose wire format a route's errors take: OpenAI's envelope or Anthropic's."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"

    def body(self, exc: ChuteboxError) -> dict[str, Any]:
        return anthropic_envelope(exc) if self is Dialect.ANTHROPIC else envelope(exc)

    def sse_event(self, exc: ChuteboxError) -> bytes:
        """A stream's failure after its headers went out, as this dialect's clients read it:
        Anthropic's SDKs raise on an `event: error` frame."""
        if self is Dialect.ANTHROPIC:
            return b"event: error\ndata: " + json.dumps(anthropic_envelope(exc)).encode() + b"\n\n"
        return sse_error_event(exc)


def from_engine_body(status: int, body: bytes) -> EngineError:
    """Turn an engine's error reply (OpenAI, vLLM or FastAPI shaped) into an EngineError."""
    message, type_, param, code = f"engine answered HTTP {status}", None, None, None
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        if text:
            message = text[:2000]
        return EngineError(status, message)
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or message)
            type_ = err.get("type") if isinstance(err.get("type"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
            raw_code = err.get("code")
            # vLLM puts the HTTP status in `code`; OpenAI's spec wants a string or null.
            code = raw_code if isinstance(raw_code, str) else None
        elif isinstance(err, str):
            message = err
        if isinstance(data.get("detail"), str) and "error" not in data:
            message = data["detail"]
    return EngineError(status, message, type=type_, param=param, code=code)
