"""Chutes' `POST /generate` (raw JPEG) and OpenAI's `POST /v1/images/generations`.

`model` may be left out when one chute serves images, as on a Chutes diffusion chute whose
route is the chute itself.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from engines.base import IMAGES
from runtime.protocol.images import GenerateRequest, ImageGenerationRequest
from runtime.routes.forward import forward
from runtime.streaming import EngineCall


async def generate(request: Request) -> EngineCall:
    return await forward(request, GenerateRequest, IMAGES, chat=False)


async def image_generations(request: Request) -> EngineCall:
    return await forward(request, ImageGenerationRequest, IMAGES, chat=False)


routes = [
    Route("/generate", generate, methods=["POST"]),
    Route("/v1/images/generations", image_generations, methods=["POST"]),
]
