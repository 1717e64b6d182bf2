"""Requests for `{username}-{name}.<domain>` go to that chute's `/chutes/` path."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.api.middleware.chute_host import ChuteHostMiddleware, host_label


def seen_path(host: bytes | None, path: str = "/echo") -> str:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])

    headers = [(b"host", host)] if host is not None else []
    scope = {"type": "http", "path": path, "raw_path": path.encode(), "headers": headers}
    asyncio.run(ChuteHostMiddleware(app, {"tester-toolbox": "toolbox"})(scope, None, None))
    return seen[0]


def test_a_chutes_host_name_routes_to_it_whatever_the_domain() -> None:
    assert seen_path(b"tester-toolbox.chutes.ai") == "/chutes/toolbox/echo"
    assert seen_path(b"Tester-Toolbox.localhost:8000") == "/chutes/toolbox/echo"


def test_other_hosts_keep_their_path() -> None:
    assert seen_path(b"127.0.0.1:8000") == "/echo"
    assert seen_path(b"tester-other.chutes.ai") == "/echo"
    assert seen_path(None) == "/echo"
    assert host_label({"headers": [(b"host", b"a-b.c.d:1")]}) == "a-b"
