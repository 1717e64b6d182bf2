"""Requests addressed to a custom chute by host name, as the platform addresses them.

On Chutes, `https://{username}-{name}.chutes.ai/{path}` calls the chute's cord at `{path}`. A
request whose `Host` begins `{username}-{name}.` (any domain after it: a local DNS name, a
`/etc/hosts` entry, `curl -H 'Host: …'`) is rewritten here to `/chutes/{name}/{path}`, before
anything else reads its path, so it is routed, authorized, counted and logged as that form.
Pure ASGI; outermost.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send


class ChuteHostMiddleware:
    """Rewrite requests for `{username}-{name}.<domain>` to that chute's `/chutes/` path."""

    def __init__(self, app: ASGIApp, hosts: Mapping[str, str]) -> None:
        self.app = app
        # "{username}-{name}" → the chute's name.
        self.hosts = dict(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            chute = self.hosts.get(host_label(scope))
            if chute is not None:
                path = f"/chutes/{chute}{scope['path']}"
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


def host_label(scope: Scope) -> str:
    """The first label of the request's Host, lower-case ("me-whisper" of
    "me-whisper.chutes.ai:8000")."""
    for name, value in scope["headers"]:
        if name == b"host":
            host: str = value.decode("latin-1")
            return host.partition(".")[0].partition(":")[0].lower()
    return ""
