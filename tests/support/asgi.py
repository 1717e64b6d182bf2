"""The two chores of a bare ASGI test server (one that must control its connection, as
Starlette's responses would not let it): the lifespan, and a request's whole body."""

from __future__ import annotations

from starlette.types import Receive, Send


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer the server's lifespan messages until its shutdown."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body
