"""A custom chute for the tests: JSON cords (sync and async), a streaming cord, image and audio
bytes, and hooks. Runs unchanged under `chutes run --dev` and under chutebox."""

import asyncio
import io
import math
import os
import struct
import wave
import zlib

from chutes.chute import Chute, NodeSelector
from chutes.image import Image
from fastapi import Response
from pydantic import BaseModel, Field

image = (
    Image(username="tester", name="toolbox", tag="0.1")
    .from_base("parachutes/python:3.12")
    .run_command("pip install numpy==2.1.3")
    .with_env("TOOLBOX_MODE", "test")
)

chute = Chute(
    username="tester",
    name="toolbox",
    image=image,
    node_selector=NodeSelector(gpu_count=1),
    concurrency=2,
)


class Words(BaseModel):
    text: str = Field(..., min_length=1, description="what to echo")
    times: int = Field(1, ge=1, le=5)


class Nap(BaseModel):
    seconds: float = Field(0.5, ge=0, le=30)


class Tone(BaseModel):
    frequency: float = Field(440.0, gt=20, lt=20000)
    seconds: float = Field(0.1, gt=0, le=2)


@chute.on_startup(priority=10)
def first(self):
    self.greeting = "hello"


@chute.on_startup(priority=90)
async def second(self):
    # Runs after `first`: it reads what `first` set.
    self.greeting = self.greeting + ", world"


@chute.on_shutdown()
def goodbye(self):
    marker = os.environ.get("TOOLBOX_SHUTDOWN_MARKER")
    if marker:
        with open(marker, "w") as out:
            out.write("shut down")


@chute.cord(public_api_path="/echo", public_api_method="POST")
def echo(self, words: Words) -> dict:
    return {"text": " ".join([words.text] * words.times), "greeting": self.greeting}


@chute.cord(public_api_path="/aecho", public_api_method="POST")
async def aecho(self, words: Words) -> dict:
    return {"text": words.text[::-1], "greeting": self.greeting}


@chute.cord(public_api_path="/count", public_api_method="POST", stream=True)
async def count(self, words: Words):
    for i in range(words.times):
        yield f"data: {i} {words.text}\n\n"


@chute.cord(public_api_path="/nap", public_api_method="POST")
async def nap(self, nap: Nap) -> dict:
    await asyncio.sleep(nap.seconds)
    return {"slept": nap.seconds}


@chute.cord(public_api_path="/info", public_api_method="GET")
async def info(self) -> dict:
    return {"name": "toolbox", "greeting": self.greeting}


@chute.cord(public_api_path="/square", public_api_method="POST", output_content_type="image/png")
def square(self, tone: Tone) -> Response:
    return Response(content=png(8, 8), media_type="image/png")


@chute.cord(public_api_path="/tone", public_api_method="POST", output_content_type="audio/wav")
def tone(self, tone: Tone) -> Response:
    return Response(content=wav(tone.frequency, tone.seconds), media_type="audio/wav")


def png(width: int, height: int) -> bytes:
    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def wav(frequency: float, seconds: float) -> bytes:
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * i / rate)))
        for i in range(int(rate * seconds))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()
