"""`POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings`."""

from __future__ import annotations

from starlette.routing import Route

from runtime.backend import CHAT, COMPLETIONS, EMBEDDINGS
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.protocol.embeddings import EmbeddingRequest
from runtime.routes.forward import Forward

routes = [
    Route("/v1/chat/completions", Forward(ChatCompletionRequest, CHAT, chat=True),
          methods=["POST"]),
    Route("/v1/completions", Forward(CompletionRequest, COMPLETIONS, chat=False),
          methods=["POST"]),
    Route("/v1/embeddings", Forward(EmbeddingRequest, EMBEDDINGS, chat=False), methods=["POST"]),
]  # fmt: skip
