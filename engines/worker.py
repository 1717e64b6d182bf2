"""What chutebox's own worker engines share: their launch line and their HTTP basics.

The sentence-transformers and diffusers engines are chutebox code run as processes of their
own (`python -m engines.<server>`), speaking the same key-checked HTTP as vLLM. Like vLLM
under chutebox they listen on a Unix socket in chutebox's private folder (`--uds`) and read
their per-boot key from the environment (`CHUTEBOX_ENGINE_KEY`), never from their arguments.
Each serves `/openapi.json` naming the request fields it takes, which the gateway reads at
readiness as it does vLLM's.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from runtime.errors import ChuteboxError, ConfigError
from runtime.fleet.backend import (
    ENGINE_KEY_ENV,
    PACKAGE_ROOT,
    AbortCall,
    LaunchRequest,
    LaunchSpec,
    ParallelSizes,
    int_flag,
)

WORKER_OWNED_FLAGS = ("--api-key", "--served-model-name", "--host", "--port", "--model",
                      "--device", "--uds")  # fmt: skip


def refuse_owned_flags(args: Sequence[str], owned: Sequence[str], engine: str) -> None:
    """Engine args may not set what chutebox sets for every engine of this kind."""
    for arg in args:
        name = arg.partition("=")[0]
        if name in owned:
            raise ConfigError(f"engine_args may not set {name}: chutebox sets it for every "
                              f"{engine} engine")  # fmt: skip


def read_parallel_sizes(
    args: Sequence[str], tensor: Sequence[str], pipeline: Sequence[str], data: Sequence[str]
) -> ParallelSizes:
    """The sizes `args` set, in an engine's own spellings of the three flags; ConfigError
    naming the flag when a value is not a positive integer."""
    try:
        return ParallelSizes(int_flag(args, tensor), int_flag(args, pipeline), int_flag(args, data))
    except ValueError as exc:
        raise ConfigError(f"engine_args: {exc}") from None


def listen_args(request: LaunchRequest) -> tuple[str, ...]:
    """Where an engine listens, in the flags vLLM and uvicorn-based workers share."""
    if request.socket_path:
        return ("--uds", request.socket_path)
    return ("--host", request.host, "--port", str(request.port))


class WorkerBackend:
    """Base of the backends whose engine is a chutebox worker server."""

    name = "worker"
    server_module = ""
    ready_path = "/v1/models"
    health_path = "/health"
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = False
    multi_node = False
    unix_socket = True
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        refuse_owned_flags(args, WORKER_OWNED_FLAGS, self.name)

    def parallel_sizes(self, args: Sequence[str]) -> ParallelSizes:
        return ParallelSizes()

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        self.check_args(request.engine_args)
        argv = (
            request.python, "-m", self.server_module,
            "--model", request.model_path,
            "--served-model-name", request.served_name,
            *listen_args(request),
            "--device", request.device, "--threads", str(len(request.cpu_ids) or 1),
            *self.extra_args(request),
            *request.engine_args,
        )  # fmt: skip
        env = {"PYTHONPATH": PACKAGE_ROOT, ENGINE_KEY_ENV: request.api_key}
        return LaunchSpec(argv=argv, env=env)

    def extra_args(self, request: LaunchRequest) -> tuple[str, ...]:
        return ()

    def abort_call(self, request_id: str) -> AbortCall | None:
        return None


def worker_parser(module: str) -> argparse.ArgumentParser:
    """The arguments every worker takes: the ones `WorkerBackend.launch` passes."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", epilog=f"The API key is read from ${ENGINE_KEY_ENV}."
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--uds", help="listen on this Unix socket instead of --host/--port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    return parser


def parse_worker_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, key_required: bool = True
) -> argparse.Namespace:
    """Parse the arguments, and read the key from the environment: a worker's process edge."""
    args = parser.parse_args(argv)
    args.api_key = os.environ.get(ENGINE_KEY_ENV, "")
    if key_required and not args.api_key:
        parser.error(f"set {ENGINE_KEY_ENV} to the key requests must carry")
    if not args.uds and not args.port:
        parser.error("give --uds PATH or --port PORT")
    return args


def serve(app: ASGIApp, args: argparse.Namespace) -> None:
    """Run a worker app where its arguments say: a Unix socket, or host and port."""
    import uvicorn

    if args.uds:
        uvicorn.run(app, uds=args.uds, log_level="warning")
    else:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def authorized(request: Request, api_key: str) -> bool:
    return request.headers.get("authorization") == f"Bearer {api_key}"


def unauthorized() -> JSONResponse:
    return JSONResponse({"error": "Unauthorized"}, status_code=401)


Handler = Callable[[Request], Awaitable[Response]]


def keyed(handler: Handler, allowed: Callable[[Request], bool]) -> Handler:
    """`handler`, answering 401 to a caller `allowed` refuses."""

    async def checked(request: Request) -> Response:
        return await handler(request) if allowed(request) else unauthorized()

    return checked


def error_body(exc: ChuteboxError) -> JSONResponse:
    """A worker's error, in the shape vLLM answers and the gateway reads."""
    body = {"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                      "code": exc.code}}  # fmt: skip
    return JSONResponse(body, status_code=exc.status_code)


def model_list(served_name: str, created: int, root: str, **card: Any) -> JSONResponse:
    entry = {"id": served_name, "object": "model", "created": created, "owned_by": "chutebox",
             "root": root, **card}  # fmt: skip
    return JSONResponse({"object": "list", "data": [entry]})


def openapi_document(
    title: str, bodies: Mapping[str, type[BaseModel]], extras: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """A minimal OpenAPI document: each POST route's JSON body schema, from the request
    models the worker validates with, plus the `extras` it reads beyond them."""
    paths: dict[str, Any] = {}
    for path, model in bodies.items():
        schema = model.model_json_schema()
        properties = schema.setdefault("properties", {})
        for name in extras.get(path, ()):
            properties.setdefault(name, {})
        content = {"application/json": {"schema": schema}}
        paths[path] = {"post": {"requestBody": {"content": content, "required": True}}}
    return {"openapi": "3.1.0", "info": {"title": title, "version": "1"}, "paths": paths}
