"""Chutes' `POST /generate` (raw JPEG) and OpenAI's `POST /v1/images/generations`.

`model` may be left out when one chute serves images, as on a Chutes diffusion chute whose
route is the chute itself.
"""

from __future__ import annotations

from starlette.routing import Route

from runtime.backend import IMAGES
from runtime.protocol.images import GenerateRequest, ImageGenerationRequest
from runtime.routes.forward import Forward

routes = [
    Route("/generate", Forward(GenerateRequest, IMAGES, chat=False), methods=["POST"]),
    Route("/v1/images/generations", Forward(ImageGenerationRequest, IMAGES, chat=False),
          methods=["POST"]),
]  # fmt: skip
