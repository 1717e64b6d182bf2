"""`POST /tokenize` and `POST /detokenize`, as vLLM chutes expose them."""

from __future__ import annotations

from starlette.routing import Route

from runtime.backend import TOKENIZE
from runtime.protocol.tokenize import DetokenizeRequest, TokenizeRequest
from runtime.routes.forward import Forward

# They take the chute's admission slot like any engine call: a tokenizer run is cheap, but a
# flood of them would still queue on the engine's event loop ahead of generation, unbounded.
routes = [
    Route("/tokenize", Forward(TokenizeRequest, TOKENIZE, chat=False), methods=["POST"]),
    Route("/detokenize", Forward(DetokenizeRequest, TOKENIZE, chat=False), methods=["POST"]),
]
