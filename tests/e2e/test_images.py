"""Images through chutebox: a real diffusers worker on a tiny random-weights pipeline."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.e2e.conftest import API_KEY
from tests.support.kit import run_kit, statuses
from tests.support.servers import Served, chutebox_serve
from tests.support.tiny_diffusion import build_tiny_pipeline

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]
SMALL = {"prompt": "a red cat", "width": 128, "height": 128, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("images")
    pipeline = build_tiny_pipeline(folder / "tiny-sd")
    config = folder / "chutes.toml"
    config.write_text(
        f'[[chutes]]\nname = "tiny-sd"\nmodel = {json.dumps(str(pipeline))}\nengine = "diffusers"\n'
    )
    args = ["--config", str(config), "--api-key", API_KEY]
    with chutebox_serve(args, folder / "chutebox.log", ready_timeout=300) as served:
        yield served


@pytest.fixture(scope="module")
def http(gateway: Served) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=120) as client:
        yield client


def generate(http: httpx.Client, **fields: Any) -> httpx.Response:
    return http.post("/generate", json={**SMALL, **fields})


def test_generate_answers_a_jpeg_of_the_requested_size(http: httpx.Client) -> None:
    reply = generate(http, width=256, height=128, seed=7)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/jpeg"
    assert re.fullmatch(
        r'attachment; filename="[0-9a-f-]{36}\.jpg"', reply.headers["content-disposition"]
    )
    assert reply.headers["x-chutes-conn-available"] == "2"  # diffusion's default concurrency 3
    image = Image.open(io.BytesIO(reply.content))
    assert image.format == "JPEG" and image.size == (256, 128)


def test_the_same_seed_gives_the_same_bytes(http: httpx.Client) -> None:
    first = generate(http, seed=11).content
    assert generate(http, seed=11).content == first
    assert generate(http, seed=12).content != first


def test_model_may_be_named_or_left_out(http: httpx.Client) -> None:
    assert generate(http, model="tiny-sd", seed=1).content == generate(http, seed=1).content
    reply = generate(http, model="other")
    assert reply.status_code == 404 and reply.json()["error"]["param"] == "model"


def test_openai_images_with_the_sdk(gateway: Served) -> None:
    with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=API_KEY) as sdk:
        result = sdk.images.generate(
            model="tiny-sd", prompt="a blue boat", n=2, size="128x128",  # type: ignore[arg-type]
            response_format="b64_json", extra_body={"seed": 3, "num_inference_steps": 2},
        )  # fmt: skip
    assert len(result.data) == 2
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json or ""))) for d in result.data]
    assert [i.size for i in images] == [(128, 128), (128, 128)]
    assert images[0].tobytes() != images[1].tobytes()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"steps": 4}, "steps"),
        ({"width": 100}, "width"),
        ({"height": 4096}, "height"),
        ({"width": 130}, "width"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 51}, "num_inference_steps"),
        ({"guidance_scale": 0.5}, "guidance_scale"),
        ({"guidance_scale": 25}, "guidance_scale"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": None}, "prompt"),
    ],
)
def test_generate_refuses_bad_input(http: httpx.Client, fields: dict[str, Any], param: str) -> None:
    reply = generate(http, **fields)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "big"}, "size"),
        ({"size": "64x64"}, "size"),
        ({"response_format": "url"}, "response_format"),
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"quality": "hd"}, "quality"),
    ],
)
def test_image_generations_refuse_bad_input(
    http: httpx.Client, fields: dict[str, Any], param: str
) -> None:
    body = {"model": "tiny-sd", "prompt": "x", "size": "128x128", **fields}
    reply = http.post("/v1/images/generations", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param
    if param == "response_format":
        assert "no image store" in error["message"]


def test_the_conformance_kit_passes_on_images(gateway: Served, tmp_path: Path) -> None:
    args = ["--base-url", gateway.base_url, "--api-key", API_KEY, "--image-model", "tiny-sd"]
    code, report, output = run_kit(tmp_path, *args, "--only", "images")
    assert code == 0, output
    assert set(statuses(report).values()) == {"pass"}, output


def test_images_and_their_steps_are_metered_for_the_key(http: httpx.Client) -> None:
    def used() -> tuple[int, int, int]:
        rows = http.get("/users/me/usage", params={"chute": "tiny-sd"}).json()["data"]
        return (sum(r["requests"] for r in rows), sum(r["images"] for r in rows),
                sum(r["steps"] for r in rows))  # fmt: skip

    before = used()
    assert generate(http).status_code == 200
    body = {"prompt": "a red cat", "size": "128x128", "n": 2, "num_inference_steps": 3}
    assert http.post("/v1/images/generations", json=body).status_code == 200
    after = used()
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (2, 3, 2 + 2 * 3)
