"""`POST /v1/chat/completions` and `POST /v1/completions`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from engines.base import CHAT, COMPLETIONS
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.routes.forward import forward
from runtime.streaming import EngineCall


async def chat_completions(request: Request) -> EngineCall:
    return await forward(request, ChatCompletionRequest, CHAT, chat=True)


async def completions(request: Request) -> EngineCall:
    return await forward(request, CompletionRequest, COMPLETIONS, chat=False)


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
]
