"""Reranking and pair scoring in chutebox's sentence-transformers worker, answering as vLLM
answers `/v1/rerank` and `/v1/score`.

Two scorers, as vLLM has: a cross-encoder (`--cross-encoder`: the model reads each pair and
its own head scores it, so the scores equal `CrossEncoder.predict`), and, for an embedding
model, the cosine similarity of the two texts' embeddings (what vLLM's pooling runner answers
for an embedding model). Either way the work goes through the worker's dynamic batcher, so
pairs or texts from concurrent requests share forward passes. A text (or pair) longer than the
model takes is a 400 naming it, unless the request sends `truncate_prompt_tokens`.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import numpy as np
import orjson
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engines.batching import Batcher
from engines.st_encoders import Encoder, Vectors, request_side_copy
from engines.worker import authorized, error_body, model_list, openapi_document, unauthorized
from runtime.errors import ChuteboxError, InvalidRequestError
from runtime.protocol.rerank import RerankRequest, ScoreRequest
from runtime.protocol.validation import parse_body, validate

Pair = tuple[str, str]
# The routes' bodies, and the pair spellings the score route reads beyond its schema (vLLM's
# first two).
BODIES: dict[str, type[BaseModel]] = {"/v1/rerank": RerankRequest, "/v1/score": ScoreRequest}
EXTRAS = {"/v1/score": ("text_1", "text_2", "queries", "documents")}


def too_long(param: str, count: int, limit: int, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{param}: the {what} has {count} tokens, more than the model's maximum of {limit}; "
        "shorten it, or send truncate_prompt_tokens: -1 to truncate",
        param=param,
        code="context_length_exceeded",
    )


class Scorer(Protocol):
    """Scores (query, document) pairs; `param` names the documents in errors."""

    async def score(
        self, pairs: list[Pair], truncate: int | None, param: str
    ) -> tuple[list[float], int]:
        """The score of each pair, and the prompt tokens they took."""


class CrossEncoderModel:
    """A CrossEncoder, its pair tokenizer and its limit; `predict` runs one batch of pairs."""

    def __init__(self, path: str, device: str, threads: int) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(max(1, threads))
        self.model = CrossEncoder(path, device=device)
        # Counting runs on the event loop while `predict` runs in the batch thread: a fast
        # tokenizer shared between them breaks (see request_side_copy).
        self.counter = request_side_copy(self.model.tokenizer)
        self.max_length = int(self.model.max_length or self.counter.model_max_length)

    def token_counts(self, pairs: Sequence[Pair]) -> list[int]:
        firsts, seconds = [p[0] for p in pairs], [p[1] for p in pairs]
        encoded = self.counter(firsts, seconds, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def predict(self, pairs: Sequence[Pair]) -> list[float]:
        scores = self.model.predict(list(pairs), batch_size=len(pairs), show_progress_bar=False)
        return [float(s) for s in scores]


class CrossEncoderScorer:
    """Each pair through the cross-encoder (the model truncates when asked to)."""

    def __init__(self, model: CrossEncoderModel, batcher: Batcher[Pair, float]) -> None:
        self.model = model
        self.batcher = batcher

    async def score(
        self, pairs: list[Pair], truncate: int | None, param: str
    ) -> tuple[list[float], int]:
        counts = self.model.token_counts(pairs)
        limit = self.model.max_length
        if truncate is None:
            for i, count in enumerate(counts):
                if count > limit:
                    raise too_long(f"{param}[{i}]", count, limit, "pair")
        tokens = sum(min(n, limit) for n in counts)
        return await self.batcher.submit(pairs), tokens


class BiEncoderScorer:
    """The cosine similarity of each pair's embeddings, from the embedding batcher."""

    def __init__(self, encoder: Encoder, batcher: Batcher[str, Vectors]) -> None:
        self.encoder = encoder
        self.batcher = batcher

    async def score(
        self, pairs: list[Pair], truncate: int | None, param: str
    ) -> tuple[list[float], int]:
        originals = list(dict.fromkeys(t for pair in pairs for t in pair))  # each text once
        texts = originals
        counts = self.encoder.token_counts(texts)
        limit = self.encoder.max_length
        if truncate is not None:
            keep = limit if truncate == -1 else min(truncate, limit)
            texts = [self.encoder.truncate(t, keep) if n > keep else t
                     for t, n in zip(texts, counts, strict=True)]  # fmt: skip
            counts = [min(n, keep) for n in counts]
        else:
            for text, count in zip(texts, counts, strict=True):
                if count > limit:
                    at = next(i for i, p in enumerate(pairs) if text in p)
                    raise too_long(f"{param}[{at}]", count, limit, "text")
        vectors = np.stack(await self.batcher.submit(texts)).astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        row = dict(zip(originals, vectors, strict=True))
        return [float(row[a] @ row[b]) for a, b in pairs], sum(counts)


def _text(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])
    raise InvalidRequestError(
        f"{param}: this engine scores text only (a string, or an object with `text`)",
        param=param,
        code="unsupported_input",
    )


def _texts(value: Any, param: str) -> list[str]:
    if isinstance(value, list):
        return [_text(v, f"{param}[{i}]") for i, v in enumerate(value)]
    return [_text(value, param)]


def score_pairs(data: dict[str, Any]) -> tuple[list[Pair], str]:
    """The pairs of a score request (one first text against each second, or pair by pair),
    and the name of the field holding the second texts."""
    names = ("text_1", "text_2") if "text_1" in data else ("queries", "documents")
    if names[0] not in data or names[1] not in data:
        raise InvalidRequestError("give text_1 and text_2 (or queries and documents)",
                                  param="text_1")  # fmt: skip
    firsts, seconds = _texts(data[names[0]], names[0]), _texts(data[names[1]], names[1])
    if not firsts or not seconds:
        raise InvalidRequestError(f"{names[1]}: must not be empty", param=names[1])
    if len(firsts) == 1:
        return [(firsts[0], s) for s in seconds], names[1]
    if len(firsts) != len(seconds):
        raise InvalidRequestError(
            f"{names[1]}: {len(seconds)} texts against {len(firsts)} in {names[0]}; give as "
            f"many, or one in {names[0]}",
            param=names[1],
        )
    return list(zip(firsts, seconds, strict=True)), names[1]


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


class ScoreRoutes:
    """`/v1/rerank` and `/v1/score` over a scorer, key-checked like every worker route."""

    def __init__(self, scorer: Scorer, served_name: str, api_key: str) -> None:
        self.scorer = scorer
        self.served_name = served_name
        self.api_key = api_key

    def routes(self) -> list[Route]:
        return [
            Route("/v1/rerank", self.rerank, methods=["POST"]),
            Route("/v1/score", self.score, methods=["POST"]),
        ]

    async def rerank(self, request: Request) -> Response:
        if not authorized(request, self.api_key):
            return unauthorized()
        try:
            payload = validate(RerankRequest, parse_body(await request.body()))
            query = _text(payload.query, "query")
            documents = _texts(payload.documents, "documents")
            pairs = [(query, d) for d in documents]
            truncate = payload.truncate_prompt_tokens
            scores, tokens = await self.scorer.score(pairs, truncate, "documents")
        except ChuteboxError as exc:
            return error_body(exc)
        order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
        if payload.top_n:
            order = order[: payload.top_n]
        results = []
        for i in order:
            result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if payload.return_documents is not False:
                result["document"] = {"text": documents[i]}
            results.append(result)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"id": "rerank-" + uuid.uuid4().hex, "model": self.served_name,
                      "usage": usage, "results": results})  # fmt: skip

    async def score(self, request: Request) -> Response:
        if not authorized(request, self.api_key):
            return unauthorized()
        try:
            data = parse_body(await request.body())
            payload = validate(ScoreRequest, data)
            pairs, param = score_pairs(data)
            truncate = payload.truncate_prompt_tokens
            scores, tokens = await self.scorer.score(pairs, truncate, param)
        except ChuteboxError as exc:
            return error_body(exc)
        rows = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
        return _json({"id": "score-" + uuid.uuid4().hex, "object": "list",
                      "created": int(time.time()), "model": self.served_name, "data": rows,
                      "usage": usage})  # fmt: skip


def build(args: argparse.Namespace) -> Starlette:
    """The worker app for `python -m engines.st_server --cross-encoder …`."""
    model = CrossEncoderModel(args.model, args.device, args.threads)
    batcher: Batcher[Pair, float] = Batcher(
        model.predict, max_batch=args.max_batch_size, max_wait=args.max_wait_ms / 1000
    )
    routes = ScoreRoutes(CrossEncoderScorer(model, batcher), args.served_model_name, args.api_key)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        if not authorized(request, args.api_key):
            return unauthorized()
        return model_list(args.served_model_name, created, args.model,
                          max_model_len=model.max_length)  # fmt: skip

    async def openapi(request: Request) -> Response:
        return _json(openapi_document("chutebox rerank worker", BODIES, EXTRAS))

    return Starlette(
        routes=[Route("/health", health), Route("/v1/models", models),
                Route("/openapi.json", openapi), *routes.routes()],
        lifespan=lifespan,
    )  # fmt: skip
