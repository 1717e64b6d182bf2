"""What chutebox's own worker engines share: their launch line and their HTTP basics.

The sentence-transformers and diffusers engines are chutebox code run as processes of their
own (`python -m engines.<server>`), speaking the same key-checked loopback HTTP as vLLM.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from engines.base import AbortCall, LaunchRequest, LaunchSpec
from runtime.errors import ChuteboxError, ConfigError

# Workers are chutebox code; they must import from a separate engine interpreter too.
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
WORKER_OWNED_FLAGS = ("--api-key", "--served-model-name", "--host", "--port", "--model",
                      "--device")  # fmt: skip


def refuse_owned_flags(args: Sequence[str], owned: Sequence[str], engine: str) -> None:
    """Engine args may not set what chutebox sets for every engine of this kind."""
    for arg in args:
        name = arg.partition("=")[0]
        if name in owned:
            raise ConfigError(f"engine_args may not set {name}: chutebox sets it for every "
                              f"{engine} engine")  # fmt: skip


class WorkerBackend:
    """Base of the backends whose engine is a chutebox worker server."""

    name = "worker"
    server_module = ""
    ready_path = "/v1/models"
    health_path = "/health"
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = False
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        refuse_owned_flags(args, WORKER_OWNED_FLAGS, self.name)

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        self.check_args(request.engine_args)
        argv = (
            request.python, "-m", self.server_module,
            "--model", request.model_path,
            "--served-model-name", request.served_name,
            "--api-key", request.api_key,
            "--host", request.host, "--port", str(request.port),
            "--device", request.device, "--threads", str(len(request.cpu_ids) or 1),
            *self.extra_args(request),
            *request.engine_args,
        )  # fmt: skip
        return LaunchSpec(argv=argv, env={"PYTHONPATH": PACKAGE_ROOT})

    def extra_args(self, request: LaunchRequest) -> tuple[str, ...]:
        return ()

    def abort_call(self, request_id: str) -> AbortCall | None:
        return None


def worker_parser(module: str) -> argparse.ArgumentParser:
    """The arguments every worker takes: the ones `WorkerBackend.launch` passes."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    return parser


def authorized(request: Request, api_key: str) -> bool:
    return request.headers.get("authorization") == f"Bearer {api_key}"


def unauthorized() -> JSONResponse:
    return JSONResponse({"error": "Unauthorized"}, status_code=401)


def error_body(exc: ChuteboxError) -> JSONResponse:
    """A worker's error, in the shape vLLM answers and the gateway reads."""
    body = {"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                      "code": exc.code}}  # fmt: skip
    return JSONResponse(body, status_code=exc.status_code)


def model_list(served_name: str, created: int, root: str, **card: Any) -> JSONResponse:
    entry = {"id": served_name, "object": "model", "created": created, "owned_by": "chutebox",
             "root": root, **card}  # fmt: skip
    return JSONResponse({"object": "list", "data": [entry]})
