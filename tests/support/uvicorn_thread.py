"""Run an ASGI app under a real uvicorn server in a background thread, lifespan included."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from tests.support.servers import free_port


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, http: Any = "auto", **options: Any) -> Iterator[str]:
    """`http`: uvicorn's HTTP protocol, by name or class (the gateway's: runtime.http.guard);
    `options`: more of uvicorn's (`ssl_certfile` and `ssl_keyfile` serve https)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            http=http, **options)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        scheme = "https" if options.get("ssl_certfile") else "http"
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
