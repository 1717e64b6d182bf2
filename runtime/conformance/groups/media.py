"""embeddings and images."""

from __future__ import annotations

import base64
import struct

from runtime.conformance.check import Check, Session, Skipped, conforms, expect
from runtime.protocol.responses import CreateEmbeddingResponse, ImagesResponse

TEXTS = ["The sea is wide.", "Paris is in France.", "Numbers: 1 2 3."]


def _embed(session: Session, **fields: object) -> CreateEmbeddingResponse:
    body = {"model": session.embedding_model(), "input": TEXTS, **fields}
    reply = session.request("POST", "/v1/embeddings", body)
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    return conforms(CreateEmbeddingResponse, reply.json(), "an embedding list")


def embeddings(session: Session) -> str:
    reply = _embed(session)
    expect([d.index for d in reply.data] == [0, 1, 2], "one vector per input, in order",
           [d.index for d in reply.data])  # fmt: skip
    sizes = {len(d.embedding) for d in reply.data}
    expect(len(sizes) == 1 and sizes != {0}, "vectors of one size", sizes)
    expect(reply.usage.prompt_tokens > 0 and reply.usage.total_tokens == reply.usage.prompt_tokens,
           "usage with total_tokens = prompt_tokens > 0", reply.usage.model_dump())  # fmt: skip
    return f"3 × {sizes.pop()}"


def base64_matches(session: Session) -> str:
    floats = _embed(session).data
    encoded = _embed(session, encoding_format="base64").data
    for f, e in zip(floats, encoded, strict=True):
        assert isinstance(e.embedding, str) and isinstance(f.embedding, list)
        raw = base64.b64decode(e.embedding)
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        expect(len(decoded) == len(f.embedding) and all(
            abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(decoded, f.embedding, strict=True)
        ), "base64 decoding to the float vector", "a different vector")  # fmt: skip
    return "equal"


def dimensions(session: Session) -> str:
    full = len(_embed(session).data[0].embedding)
    body = {"model": session.embedding_model(), "input": TEXTS[0], "dimensions": full // 2}
    reply = session.request("POST", "/v1/embeddings", body)
    if 400 <= reply.status_code < 500:
        # A model not trained to be shortened may refuse, if it says what it refused.
        error = reply.json().get("error") or {}
        named = error.get("param") == "dimensions" or "dimensions" in str(error.get("message"))
        expect(named, "a shortened vector, or a 4xx naming `dimensions`", reply.text[:300])
        return f"refused: {reply.status_code} naming dimensions"
    expect(reply.status_code == 200, "200 or a 4xx", reply.status_code)
    size = len(reply.json()["data"][0]["embedding"])
    expect(size == full // 2, f"{full // 2} dimensions", size)
    return f"{full} → {size}"


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(data):
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if data[i + 1] in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return 0, 0


def _png_size(data: bytes) -> tuple[int, int]:
    if not data.startswith(b"\x89PNG"):
        return 0, 0
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def generate(session: Session) -> str:
    body = {"model": session.image_model(), "prompt": "a lighthouse", "width": 256,
            "height": 128, "num_inference_steps": 2, "seed": 5}  # fmt: skip
    first = session.request("POST", "/generate", body)
    if first.status_code == 404:
        raise Skipped("no /generate route")
    kind = first.headers.get("content-type")
    expect(first.status_code == 200 and kind == "image/jpeg", "200 image/jpeg",
           f"{first.status_code} {kind}")  # fmt: skip
    expect(first.content[:2] == b"\xff\xd8", "JPEG bytes", first.content[:8])
    size = _jpeg_size(first.content)
    expect(size == (256, 128), "a 256×128 image", size)
    again = session.request("POST", "/generate", body)
    expect(again.content == first.content, "the same bytes for the same seed", "different bytes")
    return f"{len(first.content)} bytes, deterministic"


def image_generations(session: Session) -> str:
    body = {"model": session.image_model(), "prompt": "a lighthouse", "size": "128x128",
            "n": 2, "response_format": "b64_json", "seed": 5, "num_inference_steps": 2}  # fmt: skip
    reply = session.request("POST", "/v1/images/generations", body)
    if reply.status_code == 404:
        raise Skipped("no /v1/images/generations route")
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:200]}")
    images = conforms(ImagesResponse, reply.json(), "an images response").data or []
    sizes = [_png_size(base64.b64decode(i.b64_json or "")) for i in images]
    expect(sizes == [(128, 128), (128, 128)], "two 128×128 PNGs", sizes)
    return "2 images"


CHECKS = [
    Check("embeddings", "shape", embeddings, "vectors in order, one size, usage"),
    Check("embeddings", "base64", base64_matches, "base64 equals float"),
    Check("embeddings", "dimensions", dimensions, "dimensions shortens vectors (or a 4xx)"),
    Check("images", "generate", generate, "/generate answers deterministic JPEG of the size"),
    Check("images", "openai", image_generations, "/v1/images/generations answers b64 PNGs"),
]
