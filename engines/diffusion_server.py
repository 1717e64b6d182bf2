"""chutebox's image worker: a diffusers pipeline behind `/generate` and `/v1/images/generations`.

Run as `CHUTEBOX_ENGINE_KEY=KEY python -m engines.diffusion_server --model PATH
--served-model-name NAME --uds SOCKET` (or `--port P`). `/generate` answers raw JPEG bytes
(quality 85) as the Chutes diffusion template does; `/v1/images/generations` answers OpenAI's
JSON with base64 PNGs. One generation runs at a time (the gateway's concurrency bounds the
queue); the same seed gives the same bytes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
from runtime.protocol.images import GenerateRequest, ImageGenerationRequest
from runtime.protocol.validation import parse_body, validate


@dataclass(frozen=True)
class Generation:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    count: int = 1


def load_pipeline(model: str, device: str) -> Any:
    try:
        import torch
        from diffusers import (
            DiffusionPipeline,
            StableDiffusionPipeline,
            StableDiffusionXLPipeline,
        )
    except ImportError as exc:
        hint = f"{exc}. The diffusers engine needs: pip install 'chutebox[images]'"
        raise ImportError(hint) from exc
    dtype = torch.float16 if device == "cuda" else torch.float32
    path = Path(model)
    if path.is_file():
        # A single checkpoint: SDXL first, then SD 1.x (diffusers tells them apart by keys).
        try:
            pipeline = StableDiffusionXLPipeline.from_single_file(str(path), torch_dtype=dtype)
        except Exception:
            pipeline = StableDiffusionPipeline.from_single_file(str(path), torch_dtype=dtype)
    else:
        pipeline = DiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
            str(path), torch_dtype=dtype
        )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


class DiffusionWorker:
    """Request handling around one pipeline."""

    def __init__(self, pipeline: Any, device: str, served_name: str, api_key: str, model: str):
        self.pipeline = pipeline
        self.device = device
        self.served_name = served_name
        self.api_key = api_key
        self.model = model
        self.created = int(time.time())
        self.lock = asyncio.Lock()
        scale = int(getattr(pipeline, "vae_scale_factor", 8))
        # FLUX packs latents in 2×2 patches: its sides must be multiples of twice the VAE factor.
        self.multiple = scale * 2 if "Flux" in type(pipeline).__name__ else scale

    def app(self) -> Starlette:
        routes = [
            Route("/health", self.health),
            Route("/v1/models", self.models),
            Route("/generate", self.generate, methods=["POST"]),
            Route("/v1/images/generations", self.images, methods=["POST"]),
            Route("/openapi.json", self.openapi),
        ]
        return Starlette(routes=routes)

    async def openapi(self, request: Request) -> Response:
        bodies: dict[str, type[BaseModel]] = {
            "/generate": GenerateRequest,
            "/v1/images/generations": ImageGenerationRequest,
        }
        return JSONResponse(openapi_document("chutebox image worker", bodies, {}))

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def models(self, request: Request) -> Response:
        if not authorized(request, self.api_key):
            return unauthorized()
        return model_list(self.served_name, self.created, self.model,
                          pipeline=type(self.pipeline).__name__)  # fmt: skip

    def _check_sides(self, width: int, height: int, names: tuple[str, str]) -> None:
        for value, name in zip((width, height), names, strict=True):
            if value % self.multiple:
                raise InvalidRequestError(
                    f"{name}: {value} is not a multiple of {self.multiple}, which this "
                    f"pipeline needs",
                    param=name,
                )

    async def generate(self, request: Request) -> Response:
        if not authorized(request, self.api_key):
            return unauthorized()
        try:
            body = validate(GenerateRequest, parse_body(await request.body()))
            self._check_sides(body.width, body.height, ("width", "height"))
        except ChuteboxError as exc:
            return error_body(exc)
        seed = body.seed if body.seed is not None else secrets.randbelow(2**32)
        job = Generation(body.prompt, body.negative_prompt, body.width, body.height,
                         body.num_inference_steps, body.guidance_scale, seed)  # fmt: skip
        image = (await self._run(job))[0]
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
        disposition = f'attachment; filename="{uuid.uuid4()}.jpg"'
        return Response(buffer.getvalue(), media_type="image/jpeg",
                        headers={"Content-Disposition": disposition})  # fmt: skip

    async def images(self, request: Request) -> Response:
        if not authorized(request, self.api_key):
            return unauthorized()
        try:
            body = validate(ImageGenerationRequest, parse_body(await request.body()))
            width, height = body.dimensions()
            self._check_sides(width, height, ("size", "size"))
        except ChuteboxError as exc:
            return error_body(exc)
        seed = body.seed if body.seed is not None else secrets.randbelow(2**32)
        job = Generation(body.prompt, body.negative_prompt, width, height,
                         body.num_inference_steps, body.guidance_scale, seed, body.n)  # fmt: skip
        data = []
        for image in await self._run(job):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            data.append({"b64_json": base64.b64encode(buffer.getvalue()).decode()})
        return JSONResponse({"created": int(time.time()), "data": data})

    async def _run(self, job: Generation) -> list[Any]:
        async with self.lock:
            return await asyncio.to_thread(self._call, job)

    def _call(self, job: Generation) -> list[Any]:
        import torch

        # A CPU generator on every device: the same seed gives the same noise everywhere.
        generator = torch.Generator("cpu").manual_seed(job.seed)
        result = self.pipeline(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt or None,
            width=job.width,
            height=job.height,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance,
            num_images_per_prompt=job.count,
            generator=generator,
        )
        return list(result.images)


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    args = parse_worker_args(worker_parser("engines.diffusion_server"), argv)
    torch.set_num_threads(args.threads)
    pipeline = load_pipeline(args.model, args.device)
    worker = DiffusionWorker(pipeline, args.device, args.served_model_name, args.api_key,
                             args.model)  # fmt: skip
    serve(worker.app(), args)


if __name__ == "__main__":
    main()
