"""The least a relay on chutebox's stack can cost: the proxy bench's reference row.

    python bench/floor.py --port 9002 --upstream http://127.0.0.1:9000

Raw ASGI under the same uvicorn (uvloop, httptools) with chutebox's engine client
(runtime/http/engine_client.py): read the body, send it upstream, relay the reply whole. No auth,
admission, validation, routing, usage, metrics or logs. Between this row and chutebox's lies
everything the gateway does per request; below it, what serving HTTP in Python costs here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.http.engine_client import Endpoint, Upstream  # noqa: E402


def relay(upstream_url: str) -> Any:
    endpoint = Endpoint(upstream_url, "none")
    client = Upstream.create()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/ready":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        reply = await client.send(endpoint, scope["method"], scope["path"], body)
        content_type = reply.headers.get("content-type", "application/json").encode()
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(b"content-type", content_type)]})  # fmt: skip
        async for chunk in reply.iter_chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        reply.release()
        await send({"type": "http.response.body", "body": b""})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL of the OpenAI server")
    args = parser.parse_args()
    uvicorn.run(relay(args.upstream), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)  # fmt: skip


if __name__ == "__main__":
    main()
