"""`POST /tokenize` and `POST /detokenize`, as vLLM chutes expose them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from engines.base import TOKENIZE
from runtime.protocol.tokenize import DetokenizeRequest, TokenizeRequest
from runtime.routes.forward import forward
from runtime.streaming import EngineCall


async def tokenize(request: Request) -> EngineCall:
    # Tokenizing is cheap and never queues in the engine: it takes no concurrency slot.
    return await forward(request, TokenizeRequest, TOKENIZE, chat=False, admit=False)


async def detokenize(request: Request) -> EngineCall:
    return await forward(request, DetokenizeRequest, TOKENIZE, chat=False, admit=False)


routes = [
    Route("/tokenize", tokenize, methods=["POST"]),
    Route("/detokenize", detokenize, methods=["POST"]),
]
