"""Reranking through chutebox on two real engines: vLLM (`--runner pooling`) and the
sentence-transformers worker serving a CrossEncoder, both on a tiny cross-encoder built here;
each score must equal `CrossEncoder.predict` on the same pairs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.servers import Served, chutebox_serve
from tests.support.tiny_cross_encoder import build_tiny_cross_encoder

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]

KEY = "rerank-key"
QUERY = "what is the capital of france"
DOCUMENTS = [
    "The capital of France is Paris.",
    "Berlin is the capital of Germany.",
    "cats and dogs like sunny weather",
    "0 1 2 3",
]
ENGINES = ("rerank-vllm", "rerank-st")


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-cross-encoder")


@pytest.fixture(scope="module")
def expected(cross_encoder: Path) -> list[float]:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(cross_encoder), device="cpu")
    return [float(s) for s in model.predict([(QUERY, d) for d in DOCUMENTS])]


@pytest.fixture(scope="module")
def served(cross_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("rerank")
    model = json.dumps(str(cross_encoder))
    config = folder / "chutes.toml"
    config.write_text(
        f'[[chutes]]\nname = "rerank-vllm"\nengine = "vllm-rerank"\nmodel = {model}\n'
        'engine_args = "--dtype float32 --max-model-len 128 --enforce-eager"\n'
        f'\n[[chutes]]\nname = "rerank-st"\nengine = "sentence-transformers"\nmodel = {model}\n'
        'engine_args = "--cross-encoder"\n'
    )
    args = ["--config", str(config)]
    with chutebox_serve(
        args, folder / "chutebox.log", ready_timeout=420, env={"CHUTEBOX_API_KEYS": KEY}
    ) as gateway:
        yield gateway


def post(served: Served, path: str, body: dict[str, object]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.post(served.base_url + path, json=body, headers=headers, timeout=60)


@pytest.mark.parametrize("model", ENGINES)
def test_rerank_scores_equal_cross_encoder_predict(
    served: Served, expected: list[float], model: str
) -> None:
    reply = post(served, "/v1/rerank", {"model": model, "query": QUERY, "documents": DOCUMENTS})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["index"] for r in results] == sorted(range(4), key=lambda i: -expected[i])
    for result in results:
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-5)
        assert result["document"]["text"] == DOCUMENTS[result["index"]]
    assert max(expected) - min(expected) > 0.05  # the model tells documents apart
    assert reply.json()["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("model", ENGINES)
def test_score_pairs_and_top_n(served: Served, expected: list[float], model: str) -> None:
    scored = post(served, "/v1/score", {"model": model, "text_1": QUERY, "text_2": DOCUMENTS})
    assert scored.status_code == 200, scored.text
    scores = [row["score"] for row in scored.json()["data"]]
    assert scores == pytest.approx(expected, abs=1e-5)
    top = post(
        served, "/v1/rerank", {"model": model, "query": QUERY, "documents": DOCUMENTS, "top_n": 2}
    )
    assert len(top.json()["results"]) == 2


def test_concurrent_reranks_are_batched_and_each_gets_its_own(
    served: Served, expected: list[float]
) -> None:
    def one(i: int) -> list[float]:
        docs = DOCUMENTS[i % 4 :] + DOCUMENTS[: i % 4]
        reply = post(served, "/v1/score", {"model": "rerank-st", "text_1": QUERY, "text_2": docs})
        assert reply.status_code == 200, reply.text
        return [row["score"] for row in reply.json()["data"]]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(16)))
    for i, scores in enumerate(got):
        rotated = expected[i % 4 :] + expected[: i % 4]
        assert scores == pytest.approx(rotated, abs=1e-5)


def test_an_over_long_pair_is_a_400_naming_the_document(served: Served) -> None:
    long = "paris " * 400
    for model in ENGINES:
        reply = post(served, "/v1/rerank", {"model": model, "query": QUERY, "documents": [long]})
        assert reply.status_code == 400, (model, reply.text)


def test_a_generate_route_on_a_rerank_chute_names_what_it_serves(served: Served) -> None:
    reply = post(
        served,
        "/v1/chat/completions",
        {"model": "rerank-vllm", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]
    assert "rerank-vllm" in message and "/v1/rerank" in message and "/v1/score" in message
