"""`POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from engines.base import CHAT, COMPLETIONS, EMBEDDINGS
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.protocol.embeddings import EmbeddingRequest
from runtime.routes.forward import forward
from runtime.streaming import EngineCall


async def chat_completions(request: Request) -> EngineCall:
    return await forward(request, ChatCompletionRequest, CHAT, chat=True)


async def completions(request: Request) -> EngineCall:
    return await forward(request, CompletionRequest, COMPLETIONS, chat=False)


async def embeddings(request: Request) -> EngineCall:
    return await forward(request, EmbeddingRequest, EMBEDDINGS, chat=False)


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
]
