"""`POST /tokenize` and `POST /detokenize`, as vLLM chutes expose them."""

from __future__ import annotations

from starlette.routing import Route

from engines.base import TOKENIZE
from runtime.protocol.tokenize import DetokenizeRequest, TokenizeRequest
from runtime.routes.forward import Forward

# Tokenizing is cheap and never queues in the engine: it takes no concurrency slot.
routes = [
    Route("/tokenize", Forward(TokenizeRequest, TOKENIZE, chat=False, admit=False),
          methods=["POST"]),
    Route("/detokenize", Forward(DetokenizeRequest, TOKENIZE, chat=False, admit=False),
          methods=["POST"]),
]  # fmt: skip
