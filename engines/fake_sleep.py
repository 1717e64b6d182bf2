"""vLLM's sleep mode, as the fake engine plays it: `POST /sleep?level=1|2`, `POST /wake_up`,
`GET /is_sleeping`, each taking `delay` seconds, as vLLM's development routes answer them
(behind `--enable-sleep-mode` and `VLLM_SERVER_DEV_MODE=1` there). Asleep, the engine
answers inference routes 503: it holds no weights on the device."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engines.worker import keyed

AWAKE_ONLY = ("/v1/",)


class SleepMode:
    """The sleep state of one fake engine, and its routes."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.level = 0  # 0: awake
        self.counts: dict[str, Any] = {"sleeps": 0, "wakes": 0, "levels": []}

    def routes(self, authorized: Callable[[Request], bool]) -> list[Route]:
        """The routes, each refusing a caller without the engine's key (401)."""

        return [
            Route("/sleep", keyed(self.sleep, authorized), methods=["POST"]),
            Route("/wake_up", keyed(self.wake_up, authorized), methods=["POST"]),
            Route("/is_sleeping", keyed(self.is_sleeping, authorized)),
        ]

    async def sleep(self, request: Request) -> Response:
        level = int(request.query_params.get("level", "1"))
        if level not in (1, 2):
            return JSONResponse({"error": {"message": "level: 1 or 2"}}, status_code=400)
        await asyncio.sleep(self.delay)
        self.level = level
        self.counts["sleeps"] += 1
        self.counts["levels"].append(level)
        return JSONResponse({"status": "sleeping", "level": level})

    async def wake_up(self, request: Request) -> Response:
        await asyncio.sleep(self.delay)
        self.level = 0
        self.counts["wakes"] += 1
        return JSONResponse({"status": "awake", "tags": None})

    async def is_sleeping(self, request: Request) -> Response:
        return JSONResponse({"is_sleeping": self.level > 0})

    def guard(self, app: ASGIApp) -> ASGIApp:
        """`app`, answering 503 on inference routes while asleep."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and self.level and scope["path"].startswith(AWAKE_ONLY):
                message = "the engine is sleeping; wake it with POST /wake_up"
                reply = JSONResponse({"error": {"message": message}}, status_code=503)
                await reply(scope, receive, send)
                return
            await app(scope, receive, send)

        return guarded
