"""chutebox's embedding worker: a sentence-transformers model behind `/v1/embeddings`.

Run as `CHUTEBOX_ENGINE_KEY=KEY python -m engines.st_server --model PATH --served-model-name NAME
--uds SOCKET` (or `--port P`). Like every engine it listens where only chutebox reaches it, with
its own key, and is supervised by the gateway.
Concurrent requests are batched dynamically (`--max-batch-size`, `--max-wait-ms`); limits are
the model's own (its maximum sequence length, its dimension) and give 400s naming the input.
It also scores pairs at `/v1/rerank` and `/v1/score` by the cosine similarity of their
embeddings, as vLLM does for an embedding model; with `--cross-encoder` it serves a
`CrossEncoder` there instead, and no embeddings (`engines.st_rerank`).
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engines.batching import Batcher
from engines.st_encoders import Encoder, OnnxEncoder, TorchEncoder, Vectors
from engines.st_rerank import BODIES, EXTRAS, BiEncoderScorer, ScoreRoutes
from engines.worker import (
    authorized,
    error_body,
    model_list,
    openapi_document,
    parse_worker_args,
    serve,
    unauthorized,
    worker_parser,
)
from runtime.errors import ChuteboxError, InvalidRequestError
from runtime.protocol.embeddings import EmbeddingRequest
from runtime.protocol.validation import parse_body, validate


@dataclass(frozen=True)
class WorkerOptions:
    served_name: str
    api_key: str
    model: str
    max_inputs: int = 2048
    matryoshka: bool = False


class EmbeddingWorker:
    """Request handling around an encoder and its batcher."""

    def __init__(self, encoder: Encoder, batcher: Batcher[str, Any], options: WorkerOptions):
        self.encoder = encoder
        self.batcher = batcher
        self.options = options
        self.created = int(time.time())

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            self.batcher.start()
            yield
            await self.batcher.stop()

        scoring = ScoreRoutes(BiEncoderScorer(self.encoder, self.batcher),
                              self.options.served_name, self.options.api_key)  # fmt: skip
        routes = [
            Route("/health", self.health),
            Route("/v1/models", self.models),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/openapi.json", self.openapi),
            *scoring.routes(),
        ]
        return Starlette(routes=routes, lifespan=lifespan)

    async def openapi(self, request: Request) -> Response:
        bodies: dict[str, type[BaseModel]] = {"/v1/embeddings": EmbeddingRequest, **BODIES}
        document = openapi_document("chutebox embedding worker", bodies, EXTRAS)
        return Response(orjson.dumps(document), media_type="application/json")

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def models(self, request: Request) -> Response:
        if not authorized(request, self.options.api_key):
            return unauthorized()
        return model_list(self.options.served_name, self.created, self.options.model,
                          max_model_len=self.encoder.max_length,
                          dimensions=self.encoder.dimension)  # fmt: skip

    async def embeddings(self, request: Request) -> Response:
        if not authorized(request, self.options.api_key):
            return unauthorized()
        try:
            payload = validate(EmbeddingRequest, parse_body(await request.body()))
            texts, tokens = self._prepare(payload)
            dims = self._dimensions(payload.dimensions)
            vectors = np.stack(await self.batcher.submit(texts))
        except ChuteboxError as exc:
            return error_body(exc)
        if dims < self.encoder.dimension:
            vectors = vectors[:, :dims]
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        data = [
            {"index": i, "object": "embedding", "embedding": _encoded(v, payload.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}
        body = {"object": "list", "data": data, "model": self.options.served_name, "usage": usage}
        # orjson writes numpy rows directly: several times cheaper than floats through json.
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json")  # fmt: skip

    def _prepare(self, payload: EmbeddingRequest) -> tuple[list[str], list[int]]:
        """The texts to encode and the tokens each takes, after the limits are checked."""
        raw = payload.input
        if isinstance(raw, list) and raw and not isinstance(raw[0], str):
            raise InvalidRequestError(
                "input: token arrays are not supported by the sentence-transformers engine; "
                "send text",
                param="input",
                code="unsupported_input",
            )
        texts = [raw] if isinstance(raw, str) else [str(t) for t in raw]
        if len(texts) > self.options.max_inputs:
            raise InvalidRequestError(
                f"input: {len(texts)} inputs, more than the {self.options.max_inputs} allowed "
                "in one request",
                param="input",
            )
        counts = self.encoder.token_counts(texts)
        limit = self.encoder.max_length
        wanted = payload.truncate_prompt_tokens
        if wanted is not None:
            keep = limit if wanted == -1 else min(wanted, limit)
            texts = [self.encoder.truncate(t, keep) if n > keep else t
                     for t, n in zip(texts, counts, strict=True)]  # fmt: skip
            return texts, [min(n, keep) for n in counts]
        for i, count in enumerate(counts):
            if count > limit:
                param = "input" if isinstance(raw, str) else f"input[{i}]"
                raise InvalidRequestError(
                    f"{param} has {count} tokens, more than the model's maximum of {limit}; "
                    "shorten it, or send truncate_prompt_tokens: -1 to truncate",
                    param=param,
                    code="context_length_exceeded",
                )
        return texts, counts

    def _dimensions(self, requested: int | None) -> int:
        full = self.encoder.dimension
        if requested is None or requested == full:
            return full
        if requested > full:
            raise InvalidRequestError(
                f"dimensions: {requested} is more than the model's {full}", param="dimensions"
            )
        if not self.options.matryoshka:
            raise InvalidRequestError(
                f"dimensions: this model returns {full}-dimensional vectors and was not "
                "declared Matryoshka-trained (engine arg --matryoshka), so it cannot shorten them",
                param="dimensions",
            )
        return requested


def _encoded(vector: Vectors, encoding: str | None) -> Vectors | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return np.ascontiguousarray(vector, dtype=np.float32)


def build_encoder(args: argparse.Namespace) -> Encoder:
    if args.backend == "onnx":
        return OnnxEncoder(args.model, args.device, args.threads, Path(args.cache_dir))
    return TorchEncoder(args.model, args.device, args.threads)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = worker_parser("engines.st_server")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--max-inputs", type=int, default=2048)
    parser.add_argument("--matryoshka", action="store_true")
    serve_help = "serve the model as a CrossEncoder: /v1/rerank and /v1/score"
    parser.add_argument("--cross-encoder", action="store_true", help=serve_help)
    parser.add_argument("--cache-dir", default=str(Path("~/.cache/chutebox").expanduser()))
    return parse_worker_args(parser, argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.cross_encoder:
        from engines.st_rerank import build

        serve(build(args), args)
        return
    encoder = build_encoder(args)
    batcher: Batcher[str, Any] = Batcher(
        lambda texts: list(encoder.encode(texts)),
        max_batch=args.max_batch_size,
        max_wait=args.max_wait_ms / 1000,
    )
    options = WorkerOptions(
        served_name=args.served_model_name, api_key=args.api_key, model=args.model,
        max_inputs=args.max_inputs, matryoshka=args.matryoshka,
    )  # fmt: skip
    worker = EmbeddingWorker(encoder, batcher, options)
    serve(worker.app(), args)


if __name__ == "__main__":
    main()
