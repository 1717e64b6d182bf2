"""A fake OpenAI-speaking engine: a real small server, for tests and benchmarks.

It answers like vLLM's OpenAI server does — same routes (chat, completions, the Responses API
with stored responses, Anthropic's Messages API), same key check, same error shape — with
deterministic output: the reply echoes the last user message word by word. Requests can
ask for behaviour tests need through extension fields: `fake_delay` (seconds between streamed
chunks or before a non-streamed reply) and the prompt marker `FAIL_MIDSTREAM` (the stream
breaks off after two chunks).

Run it as `CHUTEBOX_ENGINE_KEY=K python -m engines.fake --port P --served-model-name NAME`
(or `--uds SOCKET`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from engines.fake_dialects import MessagesReply, ResponsesReply, input_text
from engines.fake_lora import Adapters
from engines.fake_sleep import SleepMode
from engines.worker import listen_args, openapi_document, parse_worker_args, serve
from runtime.fleet.backend import (
    CHAT,
    COMPLETIONS,
    ENGINE_KEY_ENV,
    MESSAGES,
    RESPONSES,
    TOKENIZE,
    AbortCall,
    LaunchRequest,
    LaunchSpec,
    ParallelSizes,
)
from runtime.protocol.chat import ChatCompletionRequest
from runtime.protocol.completions import CompletionRequest
from runtime.protocol.messages import CountMessageTokensParams, CreateMessageParams
from runtime.protocol.responses_api import CreateResponse
from runtime.protocol.tokenize import DetokenizeRequest, TokenizeRequest

MAX_MODEL_LEN = 512
# What the fake publishes in its /openapi.json, as vLLM does: the OpenAI fields less a few it
# does not know (vLLM 0.32 names none of these three either), plus extensions of vLLM's it
# takes (and ignores) and its own test knobs.
UNKNOWN_OPENAI_FIELDS = ("store", "metadata", "service_tier")
EXTENSIONS = ("top_k", "min_p", "ignore_eos", "chat_template_kwargs", "rid", "fake_delay")


class FakeBackend:
    """Backend for the fake engine."""

    name = "fake"
    capabilities = frozenset({CHAT, COMPLETIONS, TOKENIZE, RESPONSES, MESSAGES})
    ready_path = "/v1/models"
    health_path = "/health"
    default_concurrency = 32
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = False
    multi_node = False
    unix_socket = True
    module = "engines.fake"
    install_hint = "pip install chutebox"
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        return None

    def parallel_sizes(self, args: Sequence[str]) -> ParallelSizes:
        return ParallelSizes()

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        argv = (
            request.python, "-m", "engines.fake",
            *listen_args(request),
            "--served-model-name", request.served_name,
            "--model", request.model_path,
            *request.engine_args,
        )  # fmt: skip
        sleeps = "--enable-sleep-mode" in request.engine_args
        return LaunchSpec(argv=argv, env={ENGINE_KEY_ENV: request.api_key}, sleep_mode=sleeps)

    def abort_call(self, request_id: str) -> AbortCall | None:
        return None


def _error(status: int, message: str) -> JSONResponse:
    # vLLM's shape: the HTTP status repeated as an integer `code`.
    body = {"error": {"message": message, "type": "BadRequestError", "param": None, "code": status}}
    return JSONResponse(body, status_code=status)


def _words(text: str) -> list[str]:
    return [w + " " for w in text.split()] or ["(empty) "]


def _limited(pieces: list[str], limit: Any) -> tuple[list[str], str]:
    """The pieces a token limit lets through, and the finish reason."""
    if isinstance(limit, int) and len(pieces) > limit:
        return pieces[:limit], "length"
    return pieces, "stop"


class FakeEngine:
    """The fake engine's state: its served name, key and model card."""

    def __init__(
        self, served_name: str, api_key: str, model: str, sleep: SleepMode | None = None
    ) -> None:
        self.sleep = sleep
        self.adapters = Adapters()
        self.served_name = served_name
        self.api_key = api_key
        self.model = model
        self.created = int(time.time())
        self.stats: dict[str, Any] = {
            "streams_active": 0, "streams_abandoned": 0, "requests": 0, "aborted": [],
            "last_body": None,
        }  # fmt: skip
        self.stored: dict[str, ResponsesReply] = {}

    def app(self) -> ASGIApp:
        routes = [
            Route("/health", self.health),
            Route("/v1/models", self.models),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/tokenize", self.tokenize, methods=["POST"]),
            Route("/detokenize", self.detokenize, methods=["POST"]),
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/v1/responses/{response_id}", self.stored_response, methods=["GET"]),
            Route("/v1/responses/{response_id}/cancel", self.stored_response, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/fake/stats", self.get_stats),
            Route("/abort_request", self.abort_request, methods=["POST"]),
            Route("/openapi.json", self.openapi),
        ]
        routes += self.adapters.routes(self._authorized)
        if self.sleep is not None:
            routes += self.sleep.routes(self._authorized)
        app = Starlette(routes=routes)
        return app if self.sleep is None else self.sleep.guard(app)

    async def openapi(self, request: Request) -> Response:
        bodies: dict[str, type[BaseModel]] = {
            "/v1/chat/completions": ChatCompletionRequest,
            "/v1/completions": CompletionRequest,
            "/tokenize": TokenizeRequest,
            "/detokenize": DetokenizeRequest,
            "/v1/responses": CreateResponse,
            "/v1/messages": CreateMessageParams,
            "/v1/messages/count_tokens": CountMessageTokensParams,
        }
        document = openapi_document("fake engine", bodies,
                                    dict.fromkeys(bodies, EXTENSIONS))  # fmt: skip
        for operation in document["paths"].values():
            schema = operation["post"]["requestBody"]["content"]["application/json"]["schema"]
            for name in UNKNOWN_OPENAI_FIELDS:
                schema["properties"].pop(name, None)
        stored = "/v1/responses/{response_id}"
        document["paths"][stored] = {"get": {}}
        document["paths"][stored + "/cancel"] = {"post": {}}
        return JSONResponse(document)

    def _authorized(self, request: Request) -> bool:
        # `--api-key ""` plays an engine whose authentication was switched off.
        return not self.api_key or request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        if not self._authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        self.stats["requests"] += 1
        body = await request.json()
        self.stats["last_body"] = body
        if body.get("model") != self.served_name and body.get("model") not in self.adapters.held:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        return dict(body)

    async def abort_request(self, request: Request) -> Response:
        """SGLang's abort route: records the request id it was asked to stop."""
        if not self._authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        self.stats["aborted"].append((await request.json()).get("rid"))
        return Response(status_code=200)

    async def get_stats(self, request: Request) -> Response:
        sleep = {"sleep": self.sleep.counts} if self.sleep is not None else {}
        adapters = {"adapters": {**self.adapters.counts, "held": sorted(self.adapters.held)}}
        return JSONResponse({**self.stats, **sleep, **adapters})

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def models(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        card = {
            "id": self.served_name, "object": "model", "created": self.created,
            "owned_by": "fake", "root": self.model, "parent": None,
            "max_model_len": MAX_MODEL_LEN,
        }  # fmt: skip
        return JSONResponse({"object": "list", "data": [card]})

    async def chat(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        text = input_text(body.get("messages", []))
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        return await self._reply(body, text, prompt_tokens, chat=True)

    async def completions(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        prompt = body.get("prompt", "")
        text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        return await self._reply(body, text, len(text.split()), chat=False)

    async def _reply(
        self, body: dict[str, Any], text: str, prompt_tokens: int, *, chat: bool
    ) -> Response:
        if prompt_tokens > MAX_MODEL_LEN:
            return _error(
                400,
                f"This model's maximum context length is {MAX_MODEL_LEN} tokens. However, "
                f"your request has {prompt_tokens} input tokens.",
            )
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        model = body["model"]
        if model in self.adapters.held:  # the adapter's own answer
            text = f"[{model}] {text}"
        pieces, finish = _limited(_words(text), limit)
        reply = _Reply(model, body, pieces, finish, prompt_tokens, chat=chat)
        delay = float(body.get("fake_delay", 0))
        if body.get("stream"):
            return StreamingResponse(
                self._tracked(reply.events(delay)), media_type="text/event-stream"
            )
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse(reply.whole())

    async def _tracked(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        self.stats["streams_active"] += 1
        try:
            async for event in events:
                yield event
        except asyncio.CancelledError:
            self.stats["streams_abandoned"] += 1
            raise
        finally:
            self.stats["streams_active"] -= 1

    async def responses(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        previous = body.get("previous_response_id")
        if previous is not None and previous not in self.stored:
            return _error(404, f"Response with id '{previous}' not found.")
        text = input_text(body.get("input") or "")
        pieces, finish = _limited(_words(text), body.get("max_output_tokens"))
        reply = ResponsesReply(self.served_name, pieces, len(text.split()), finish)
        if body.get("store", True):
            self.stored[reply.id] = reply
        if body.get("stream"):
            events = reply.events(float(body.get("fake_delay", 0)))
            return StreamingResponse(self._tracked(events), media_type="text/event-stream")
        return JSONResponse(reply.whole())

    async def stored_response(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        response_id = request.path_params["response_id"]
        reply = self.stored.get(response_id)
        if reply is None:
            return _error(404, f"Response with id '{response_id}' not found.")
        cancelled = request.url.path.endswith("/cancel")
        return JSONResponse(reply.whole("cancelled" if cancelled else None))

    async def messages(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        text = input_text(body.get("messages") or [])
        pieces, finish = _limited(_words(text), body.get("max_tokens"))
        reply = MessagesReply(self.served_name, pieces, len(text.split()), finish)
        if body.get("stream"):
            events = reply.events(float(body.get("fake_delay", 0)))
            return StreamingResponse(self._tracked(events), media_type="text/event-stream")
        return JSONResponse(reply.whole())

    async def count_tokens(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        return JSONResponse({"input_tokens": len(input_text(body.get("messages") or []).split())})

    async def tokenize(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        prompt = body.get("prompt")
        text = prompt if isinstance(prompt, str) else input_text(body.get("messages") or [])
        tokens = list(text.encode())
        return JSONResponse(
            {"count": len(tokens), "max_model_len": MAX_MODEL_LEN, "tokens": tokens}
        )

    async def detokenize(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        tokens = body.get("tokens") or []
        # The fake vocabulary is bytes; vLLM answers 400 for ids outside its own, too.
        if not all(isinstance(t, int) and 0 <= t < 256 for t in tokens):
            return _error(400, "token ids must be in the vocabulary [0, 256)")
        return JSONResponse({"prompt": bytes(tokens).decode("utf-8", "replace")})


class _Reply:
    """One answer, rendered whole or as OpenAI stream chunks."""

    def __init__(
        self, model: str, body: dict[str, Any], pieces: list[str], finish: str,
        prompt_tokens: int, *, chat: bool,
    ) -> None:  # fmt: skip
        self.model, self.body, self.pieces, self.finish = model, body, pieces, finish
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
        }

    def _envelope(self, choices: list[dict[str, Any]], *, chunk: bool) -> dict[str, Any]:
        kind = "chat.completion" if self.chat else "text_completion"
        return {
            "id": self.id, "object": kind + (".chunk" if chunk and self.chat else ""),
            "created": self.created, "model": self.model, "choices": choices,
        }  # fmt: skip

    def whole(self) -> dict[str, Any]:
        text = "".join(self.pieces)
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0, "message": {"role": "assistant", "content": text},
                "finish_reason": self.finish, "logprobs": None,
            }  # fmt: skip
        else:
            choice = {"index": 0, "text": text, "finish_reason": self.finish, "logprobs": None}
        return {**self._envelope([choice], chunk=False), "usage": self.usage}

    def _delta(self, piece: str, finish: str | None) -> dict[str, Any]:
        if self.chat:
            return {"index": 0, "delta": {"content": piece}, "finish_reason": finish}
        return {"index": 0, "text": piece, "finish_reason": finish}

    async def events(self, delay: float) -> AsyncIterator[bytes]:
        fail = "FAIL_MIDSTREAM" in "".join(self.pieces)
        if self.chat:
            first = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            yield _sse(self._envelope([{**first, "finish_reason": None}], chunk=True))
        for i, piece in enumerate(self.pieces):
            if delay:
                await asyncio.sleep(delay)
            if fail and i == 2:
                raise RuntimeError("fake engine: stream broken on purpose")
            yield _sse(self._envelope([self._delta(piece, None)], chunk=True))
        yield _sse(self._envelope([self._delta("", self.finish)], chunk=True))
        options = self.body.get("stream_options") or {}
        if options.get("include_usage"):
            yield _sse({**self._envelope([], chunk=True), "usage": self.usage})
        yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m engines.fake", epilog=f"The API key is read from ${ENGINE_KEY_ENV}."
    )
    parser.add_argument("--uds", help="listen on this Unix socket instead of --host/--port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--model", default="fake")
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--no-auth", action="store_true", help="answer without checking the key")
    parser.add_argument(
        "--enable-sleep-mode", action="store_true", help="serve vLLM's /sleep and /wake_up"
    )
    parser.add_argument("--sleep-delay", type=float, default=0.0, help="seconds each one takes")
    args = parse_worker_args(parser, argv, key_required=False)
    if args.startup_delay:
        time.sleep(args.startup_delay)
    sleep = SleepMode(args.sleep_delay) if args.enable_sleep_mode else None
    key = "" if args.no_auth else args.api_key
    engine = FakeEngine(args.served_model_name, key, args.model, sleep)
    serve(engine.app(), args)


if __name__ == "__main__":
    main()
