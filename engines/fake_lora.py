"""vLLM's runtime LoRA loading, as the fake engine plays it: `POST /v1/load_lora_adapter`
and `POST /v1/unload_lora_adapter` (`{"lora_name", "lora_path"}`), with vLLM's answers. A
request naming a loaded adapter is answered by it: the fake's echo starts `[NAME]`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engines.worker import keyed


class Adapters:
    """The adapters one fake engine holds, and how often each was loaded."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}
        self.counts: dict[str, Any] = {"loads": {}, "unloads": {}}

    def routes(self, authorized: Callable[[Request], bool]) -> list[Route]:
        return [
            Route("/v1/load_lora_adapter", keyed(self.load, authorized), methods=["POST"]),
            Route("/v1/unload_lora_adapter", keyed(self.unload, authorized), methods=["POST"]),
        ]

    async def load(self, request: Request) -> Response:
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error("Both 'lora_name' and 'lora_path' must be provided.")
        if name in self.held:
            return _error(f"The lora adapter '{name}' has already been loaded.")
        self.held[name] = path
        loads = self.counts["loads"]
        loads[name] = loads.get(name, 0) + 1
        return Response(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(self, request: Request) -> Response:
        name = (await request.json()).get("lora_name")
        if name not in self.held:
            return _error(f"The lora adapter '{name}' cannot be found.", 404)
        del self.held[name]
        unloads = self.counts["unloads"]
        unloads[name] = unloads.get(name, 0) + 1
        return Response(f"Success: LoRA adapter '{name}' removed successfully.")


def _error(message: str, status: int = 400) -> JSONResponse:
    error = {"message": message, "type": "BadRequestError", "param": None, "code": status}
    body = {"error": error}
    return JSONResponse(body, status_code=status)
