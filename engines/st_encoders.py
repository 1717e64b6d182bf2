"""Sentence-transformers models behind one small interface, on torch or ONNX Runtime.

Both encoders run the model's own pipeline. The torch one calls sentence-transformers. The
ONNX one exports the transformer with `torch.onnx` (once, into a cache folder) and runs the
modules after it in numpy: Pooling (mean, CLS or last token), Dense (its weights, with an
identity, tanh, ReLU or sigmoid activation, as LaBSE has) and Normalize. A model with any
other module after its transformer is refused at startup, naming the module, rather than
served with vectors that skip it; and the export is checked against torch on sample texts
before it is used (equal within 1e-5, or refused).

Heavy imports happen inside the constructors: this module is imported only by the worker.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger("chutebox.st")
Vectors = npt.NDArray[np.float32]
# Run after the transformer as (pooled vectors, attention mask) -> vectors.
Step = Callable[[Vectors, Vectors], Vectors]
# Texts the ONNX export is checked against torch with; of different lengths, so padding counts.
CHECK_TEXTS = ("a", "The capital of France is Paris.", "one two three four five six seven")
CHECK_TOLERANCE = 1e-5


class Encoder(Protocol):
    """What the embedding worker needs of a model."""

    dimension: int
    max_length: int

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes, special tokens included, before any truncation."""

    def truncate(self, text: str, tokens: int) -> str:
        """The text cut to its first `tokens` tokens (special tokens included)."""

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One vector per text, through the model's whole pipeline."""


def _install_hint(exc: ImportError) -> ImportError:
    return ImportError(
        f"{exc}. The sentence-transformers engine needs: pip install 'chutebox[embeddings]' "
        "(sentence-transformers; onnxruntime and onnx for --backend onnx)"
    )


class TorchEncoder:
    """`SentenceTransformer.encode` on the chosen device."""

    def __init__(self, path: str, device: str, threads: int) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise _install_hint(exc) from exc
        torch.set_num_threads(threads)
        self.model = SentenceTransformer(path, device=device, local_files_only=True)
        self.tokenizer = self.model.tokenizer
        self.counter = request_side_copy(self.tokenizer)
        self.max_length = int(self.model.max_seq_length or 512)
        self.dimension = int(self.model.get_embedding_dimension() or 0)

    # token_counts and truncate run on the worker's event loop while a batch encodes in its
    # thread; they use their own tokenizer copy (see request_side_copy).
    def token_counts(self, texts: Sequence[str]) -> list[int]:
        backend = getattr(self.counter, "backend_tokenizer", None)
        if backend is not None:
            # The Rust tokenizer directly: half the cost of the Python wrapper per request.
            return [len(e.ids) for e in backend.encode_batch(list(texts), add_special_tokens=True)]
        ids = self.counter(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return [len(i) for i in ids]

    def truncate(self, text: str, tokens: int) -> str:
        ids = self.counter(text, add_special_tokens=False, truncation=False)["input_ids"]
        special = self.token_counts([""])[0]
        return str(self.counter.decode(ids[: max(0, tokens - special)]))

    def encode(self, texts: Sequence[str]) -> Vectors:
        vectors = self.model.encode(
            list(texts), batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


class OnnxEncoder(TorchEncoder):
    """The same pipeline with the transformer exported to ONNX and run by ONNX Runtime."""

    def __init__(self, path: str, device: str, threads: int, cache_dir: Path) -> None:
        super().__init__(path, "cpu", threads)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise _install_hint(exc) from exc
        self.pooling = _pooling_mode(self.model)
        self.steps = pipeline_steps(list(self.model)[1:], self.pooling)
        onnx_file = self._export(path, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(onnx_file), options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self._check_against_torch()

    def _check_against_torch(self) -> None:
        want = super().encode(CHECK_TEXTS)
        got = self.encode(CHECK_TEXTS)
        worst = float(np.max(np.abs(want - got))) if want.shape == got.shape else float("inf")
        if worst > CHECK_TOLERANCE:
            raise ValueError(
                f"--backend onnx: this model's ONNX pipeline differs from torch by {worst:.2g} "
                f"(over {CHECK_TOLERANCE:g}); use --backend torch"
            )

    def _export(self, path: str, cache_dir: Path) -> Path:
        import torch

        # Keyed by the folder and its files' sizes and times: a changed model is exported anew.
        folder = Path(path).resolve()
        stamp = [f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in sorted(folder.rglob("*"))
                 if f.is_file()]  # fmt: skip
        key = hashlib.sha256("\n".join([str(folder), *stamp]).encode()).hexdigest()[:16]
        target = cache_dir / "onnx" / f"{Path(path).name}-{key}" / "model.onnx"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        sample = self.tokenizer(["a b c", "d"], padding=True, return_tensors="pt")
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
        module: Any = self.model[0]
        transformer = _by_name(module.auto_model.eval(), names)
        axes = {n: {0: "batch", 1: "sequence"} for n in names}
        axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
        log.info("exporting %s to ONNX (once) into %s", path, target)
        partial = target.with_suffix(".partial")
        # The TorchScript exporter, on purpose (the torch.export-based default needs onnxscript);
        # it warns that it is the legacy one, and tracer warnings about shape checks. What it
        # produced is checked against torch before it is used (_check_against_torch).
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                transformer,
                tuple(sample[n] for n in names),
                str(partial),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        partial.rename(target)
        return target

    def encode(self, texts: Sequence[str]) -> Vectors:
        features = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="np",
        )  # fmt: skip
        feed = {name: features[name].astype(np.int64) for name in self.inputs}
        vectors: Vectors = np.asarray(self.session.run(None, feed)[0], dtype=np.float32)
        mask = features["attention_mask"].astype(np.float32)
        for step in self.steps:
            vectors = step(vectors, mask)
        return vectors


def request_side_copy(tokenizer: Any) -> Any:
    """A tokenizer of its own for the request side, with truncation and padding off.

    A fast tokenizer keeps truncation and padding as state on its Rust object and every call
    resets them: counting on the event loop while `encode` runs in the batch thread switched
    the batch's padding off between its set-up and its encoding ("Unable to create tensor"),
    and could as well have switched its truncation off. Two objects share no state.
    """
    own = copy.deepcopy(tokenizer)
    backend = getattr(own, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    return own


def _by_name(model: Any, names: list[str]) -> Any:
    """Wrap `model` so positional export inputs reach it by name (forward's order varies)."""
    import torch

    class ByName(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(names, tensors, strict=True))).last_hidden_state

    return ByName()


def _pooling_mode(model: Any) -> str:
    pooling = next((m for m in model if type(m).__name__ == "Pooling"), None)
    if pooling is None:
        raise ValueError("--backend onnx needs a model with a Pooling module")
    mode = str(getattr(pooling, "pooling_mode", None) or pooling.get_pooling_mode_str())
    if mode not in ("mean", "cls", "lasttoken"):
        raise ValueError(f"--backend onnx supports mean, cls and lasttoken pooling, not {mode}")
    return mode


def pipeline_steps(modules: Sequence[Any], pooling: str) -> list[Step]:
    """The modules after the transformer as numpy steps; ValueError naming the first module
    (or option) the ONNX path cannot run."""
    steps: list[Step] = []
    for module in modules:
        kind = type(module).__name__
        if kind == "Pooling":
            steps.append(lambda hidden, mask: _pool(hidden, mask, pooling))
        elif kind == "Dense":
            steps.append(_dense(module))
        elif kind == "Normalize" and _on_sentence_embedding(module):
            steps.append(lambda vectors, _: _normalize(vectors))
        else:
            raise ValueError(f"--backend onnx cannot run this model's {kind} module; serve it "
                             "with --backend torch")  # fmt: skip
    return steps


def _on_sentence_embedding(module: Any) -> bool:
    names = (getattr(module, "module_input_name", "sentence_embedding"),
             getattr(module, "module_output_name", None) or "sentence_embedding")  # fmt: skip
    return names == ("sentence_embedding", "sentence_embedding")


_ACTIVATIONS: dict[str, Callable[[Vectors], Vectors]] = {
    "Identity": lambda x: x,
    "Tanh": np.tanh,
    "ReLU": lambda x: np.maximum(x, 0),
    "Sigmoid": lambda x: np.asarray(1 / (1 + np.exp(-x)), dtype=np.float32),
}


def _dense(module: Any) -> Step:
    activation = type(module.activation_function).__name__
    if activation not in _ACTIVATIONS or not _on_sentence_embedding(module):
        what = f"a {activation} activation" if activation not in _ACTIVATIONS else "its inputs"
        raise ValueError(f"--backend onnx cannot run this model's Dense module ({what}); serve "
                         "it with --backend torch")  # fmt: skip
    weight = module.linear.weight.detach().cpu().numpy().astype(np.float32).T
    bias = module.linear.bias
    offset = bias.detach().cpu().numpy().astype(np.float32) if bias is not None else 0.0
    act = _ACTIVATIONS[activation]
    residual = getattr(module, "use_residual", False)
    shortcut = getattr(module, "residual", None)
    skip = (shortcut.weight.detach().cpu().numpy().astype(np.float32).T
            if residual and shortcut is not None else None)  # fmt: skip

    def dense(vectors: Vectors, mask: Vectors) -> Vectors:
        out = np.asarray(act(vectors @ weight + offset), dtype=np.float32)
        if residual:
            out = out + (vectors if skip is None else vectors @ skip)
        return out

    return dense


def _normalize(vectors: Vectors) -> Vectors:
    return np.asarray(
        vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12),
        dtype=np.float32,
    )


def _pool(hidden: Vectors, mask: Vectors, mode: str) -> Vectors:
    if mode == "cls":
        return np.ascontiguousarray(hidden[:, 0])
    if mode == "lasttoken":
        last = mask.sum(axis=1).astype(np.int64) - 1
        return np.ascontiguousarray(hidden[np.arange(hidden.shape[0]), last])
    summed = (hidden * mask[:, :, None]).sum(axis=1)
    counts = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    return np.asarray(summed / counts, dtype=np.float32)
