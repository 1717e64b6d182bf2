"""API-key authentication as the Chutes platform does it, as pure ASGI middleware.

Accepted: `Authorization: Bearer <key>` (the scheme in any case), a bare `Authorization: <key>`
(the platform reads the header's last word, so a bare key works there too), and
`X-API-Key: <key>`. Any other scheme (`Basic …`, `Token …`) is a 401 that says what is
expected, not a key. A key is found by its digest (`runtime.access.keyring`); the identity
it names goes into the request's record for the chute's admission and the metering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.access.keyring import KeyRing
from runtime.api.envelope import error_response
from runtime.api.record import RequestRecord, record_of
from runtime.errors import AuthenticationError

IsPublic = Callable[[str, str], bool]
# Served beside the operation table, public as on vLLM and TEI.
ALWAYS_PUBLIC = frozenset({"/metrics", "/openapi.json"})


def presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> tuple[list[bytes], str | None]:
    """Every key the request offers, from Authorization and X-API-Key, and the scheme of an
    Authorization header that is neither `Bearer <key>` nor a bare key (its key not taken)."""
    keys: list[bytes] = []
    bad_scheme = None
    for name, value in headers:
        if not value:
            continue
        if name == b"authorization":
            words = value.split()
            if len(words) == 1:
                keys.append(words[0])
            elif len(words) == 2 and words[0].lower() == b"bearer":
                keys.append(words[1])
            elif words:
                bad_scheme = words[0].decode("latin-1")[:32]
        elif name == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys, bad_scheme


class KeyCheck:
    """The configured keys, and which routes need none."""

    def __init__(self, keys: KeyRing, is_public: IsPublic) -> None:
        self.keys = keys
        self.is_public = is_public

    def refusal(self, scope: Scope, record: RequestRecord) -> AuthenticationError | None:
        """Why the request may not pass (a 401), or None; notes the caller in the record."""
        offered, bad_scheme = presented_keys(scope["headers"])
        caller = self.keys.identify(offered) if offered else None
        # On a public route a key is optional, and shows more where it is sent (/status).
        if caller is not None or self.is_public(scope["method"], scope["path"]):
            record.authenticated = caller is not None
            record.caller = caller
            return None
        if bad_scheme is not None:
            message = (f"Authorization: expected 'Bearer <key>' (or the bare key), not the "
                       f"{bad_scheme!r} scheme; X-API-Key: <key> works too")  # fmt: skip
        elif offered:
            message = "invalid API key"
        else:
            message = "missing API key: send Authorization: Bearer <key> or X-API-Key: <key>"
        return AuthenticationError(message, headers={"WWW-Authenticate": "Bearer"})


class AuthMiddleware:
    """Reject requests without a configured key (401), except the public routes."""

    def __init__(self, app: ASGIApp, check: KeyCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = record_of(scope)
        refused = self.check.refusal(scope, record)
        if refused is None:
            await self.app(scope, receive, send)
        else:
            await error_response(refused, record.dialect)(scope, receive, send)


def public_routes(public_models: bool, public_paths: Iterable[str] = ()) -> IsPublic:
    """`public_paths` (the operations marked public: probes, the status page and `/status`,
    which shows more with a key), metrics and the API description are always public (as on
    vLLM and TEI); `GET /v1/models` is public when configured (as on Chutes)."""
    public = ALWAYS_PUBLIC | frozenset(public_paths)

    def is_public(method: str, path: str) -> bool:
        if path in public:
            return True
        if public_models and method in ("GET", "HEAD"):
            return path == "/v1/models" or path.startswith("/v1/models/")
        return False

    return is_public
