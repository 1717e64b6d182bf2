"""The engine of a custom chute: the Chutes SDK's own chute, cords and hooks, behind chutebox.

Run under the chute's own interpreter, which needs the `chutes` SDK and the chute's own
dependencies and nothing of chutebox installed: chutebox's folder is on PYTHONPATH, and this
module imports nothing of chutebox (only the standard library and what the SDK brings:
starlette, uvicorn).

    python -m engines.cord_runner describe FILE ATTR
    python -m engines.cord_runner serve FILE ATTR --uds PATH    (key in CHUTEBOX_ENGINE_KEY)
    python -m engines.cord_runner serve FILE ATTR --host 127.0.0.1 --port N

`describe` prints, as JSON, what the gateway needs to route to the chute and to render its
image: its name, owner, id, concurrency, cords (paths, methods, schemas, content types), jobs
and image. `serve` does what the SDK's own runner does for a cord call — its `Chute` is the
app, its cords validate their input, run the user's code in its thread pool, stream and pass
through — after running the startup hooks by priority, and runs the shutdown hooks when the
server stops (the SDK's runner never does). What it does not do: bind 0.0.0.0, add the SDK's
validator routes (`/_ping`, `/_procs`, `/_slurp`, …), or answer without the per-boot key. A
startup hook that raises ends the process before it listens, with the exception in its last
line, which the supervisor shows as the chute's reason and retries with backoff.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

ENGINE_KEY_ENV = "CHUTEBOX_ENGINE_KEY"
READY_PATH = "/_chutebox/ready"
# What a startup hook's failure exits with (the supervisor shows the last lines).
HOOK_FAILED = 3


def load(file: str, attr: str) -> Any:
    """The chute an SDK chute file defines, imported as the SDK's runner imports it."""
    # Cords register their remote (serving) handlers only in the remote context.
    os.environ["CHUTES_EXECUTION_CONTEXT"] = "REMOTE"
    path = Path(file).resolve()
    sys.path.insert(0, str(path.parent))  # the chute's sibling modules import as on Chutes
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    try:
        chute = getattr(module, attr)
    except AttributeError:
        raise SystemExit(f"{path.name} defines no {attr!r}") from None
    from chutes.chute import Chute, ChutePack

    chute = chute.chute if isinstance(chute, ChutePack) else chute
    if not isinstance(chute, Chute):
        raise SystemExit(f"{path.stem}:{attr} is a {type(chute).__name__}, not a chutes Chute")
    return chute


def public_route(cord: Any) -> tuple[str, str]:
    """Where the platform invokes a cord: its public path and method, else its path (POST)."""
    if cord._public_api_path:
        return cord._public_api_path, (cord._public_api_method or "POST").upper()
    return cord.path, "POST"


def describe(chute: Any) -> dict[str, Any]:
    image = chute.image
    cords = []
    for cord in chute.cords:
        path, method = public_route(cord)
        cords.append({
            "function": cord._func.__name__, "path": path, "method": method,
            "internal_path": cord.path, "stream": bool(cord._stream),
            "passthrough": bool(cord._passthrough), "body_schema": body_schema(cord),
            "input_schema": cord.input_schema,
            "minimal_input_schema": cord.minimal_input_schema,
            "output_content_type": cord.output_content_type,
            "output_schema": cord.output_schema,
        })  # fmt: skip
    return {
        "name": chute.name,
        "username": chute._username,
        "uid": chute.uid,
        "concurrency": chute.concurrency,
        "cords": cords,
        "jobs": [job._func.__name__ for job in chute.jobs],
        "image": image if isinstance(image, str) else None,
        "dockerfile": None if isinstance(image, str) else str(image),
        "image_tag": None if isinstance(image, str) else image_tag(image),
        "readme": chute.readme,
    }


def image_tag(image: Any) -> str:
    return f"{image.username}/{image.name}:{image.tag}"


def body_schema(cord: Any) -> dict[str, Any] | None:
    """The JSON schema of a call's body: the cord's input model (the SDK validates the body
    as that model's fields; its own `input_schema` wraps them under the argument's name)."""
    if cord.input_models:
        schema: dict[str, Any] = cord.input_models[0].model_json_schema()
        return schema
    return cord.minimal_input_schema or None


async def run_hooks(hooks: list[tuple[int, Any]]) -> None:
    """The SDK's hooks in its order: lower priority first, each awaited or called."""
    for _, hook in sorted(hooks, key=lambda entry: entry[0]):
        result = hook()
        if inspect.isawaitable(result):
            await result


class Guard:
    """The ASGI app the runner serves: the per-boot key on every request, the readiness route,
    and the body handed to the SDK's cords as its own middleware hands it
    (`request.state.decrypted`)."""

    def __init__(self, chute: Any, key: str) -> None:
        self.chute = chute
        self.key = key.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.chute(scope, receive, self._after_shutdown_hooks(send))
            return
        if scope["type"] != "http":
            await self.chute(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if headers.get(b"authorization") != b"Bearer " + self.key:
            await reply(send, 401, {"detail": "Unauthorized"})
            return
        if scope["path"] == READY_PATH:
            await reply(send, 200, {"object": "list", "data": [{"id": self.chute.name}]})
            return
        body = await read_body(receive)
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError as exc:
            await reply(send, 400, {"detail": f"the request body is not JSON: {exc}"})
            return
        scope.setdefault("state", {}).update(decrypted=data, serialized=False)
        await self.chute(scope, replay(body, receive), send)

    def _after_shutdown_hooks(self, send: Any) -> Any:
        """The server's `send` for the lifespan: the chute's shutdown hooks run before the
        server hears the app has shut down (uvicorn awaits that; after it, the process ends
        by the signal that stopped it)."""

        async def send_after(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await run_hooks(self.chute._shutdown_hooks)
            await send(message)

        return send_after


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Any) -> Any:
    """A `receive` that gives `body` once, then what the client's own gives (a disconnect)."""
    sent = False

    async def receive_again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


async def reply(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def serve(chute: Any, where: dict[str, Any], key: str) -> None:
    import uvicorn
    from chutes.chute.cord import init_user_code_executor

    if chute.jobs:
        names = ", ".join(job._func.__name__ for job in chute.jobs)
        raise SystemExit(f"{chute.name} defines jobs ({names}); chutebox serves cords only")
    init_user_code_executor(max(1, int(chute.concurrency or 1)))
    try:
        await chute.initialize()  # the startup hooks by priority, then each cord's route
    except Exception as exc:
        print(f"startup hook failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(HOOK_FAILED) from None
    for cord in chute.cords:
        path, method = public_route(cord)
        if (path, method) != (cord.path, "POST"):
            chute.add_api_route(path, cord._request_handler, methods=[method])
    config = uvicorn.Config(Guard(chute, key), log_level="warning", lifespan="on", **where)
    await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engines.cord_runner")
    parser.add_argument("command", choices=["describe", "serve"])
    parser.add_argument("file", help="the chute file")
    parser.add_argument("attr", help="the chute's name in it")
    parser.add_argument("--uds", help="serve on this Unix socket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="serve on this port (no --uds)")
    args = parser.parse_args(argv)
    from loguru import logger  # the SDK's logger: INFO, as its own runner sets it

    logger.remove()
    logger.add(sys.stderr, level="INFO")
    chute = load(args.file, args.attr)
    if args.command == "describe":
        print(json.dumps(describe(chute)))
        return
    key = os.environ.get(ENGINE_KEY_ENV, "")
    if not key or not (args.uds or args.port):
        parser.error(f"serve needs --uds or --port, and {ENGINE_KEY_ENV}")
    where = {"uds": args.uds} if args.uds else {"host": args.host, "port": args.port}
    asyncio.run(serve(chute, where, key))


if __name__ == "__main__":
    main()
