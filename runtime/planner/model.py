"""Model facts the planner needs, read from a local folder without network or torch."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

_DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "float8_e4m3fn": 1.0}
_PARAMS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


@dataclass(frozen=True)
class ModelFacts:
    """Architecture and size; `weight_bytes` is None when only a parameter count is known."""

    name: str
    model_type: str = "unknown"
    layers: int = 0
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    hidden: int = 0
    vocab: int = 0
    max_positions: int = 0
    dtype_bytes: float = 2.0
    quantization: str | None = None
    weight_bytes: int | None = None
    weight_source: str = ""
    params: float | None = None

    @property
    def has_attention(self) -> bool:
        return self.heads > 0 and self.layers > 0


def parse_params(text: str) -> float:
    """`70B` → 7e10; `1.5B`, `671B`, `135M` likewise."""
    match = _PARAMS.match(text)
    if not match:
        raise ConfigError(f"--params: cannot read {text!r}; write e.g. 8B or 671B")
    return float(match.group(1)) * _SCALE[match.group(2).upper()]


def quantization_of(config: dict[str, Any]) -> str | None:
    quant = config.get("quantization_config") or {}
    if not quant:
        return None
    method = str(quant.get("quant_method", "")).lower()
    bits = quant.get("bits") or quant.get("weight_bits")
    fmt = str(quant.get("fmt", "") or quant.get("format", "")).lower()
    if method == "fp8" or "fp8" in fmt or "float8" in fmt:
        return "fp8"
    if bits in (8, "8") or method in ("bitsandbytes_8bit", "int8"):
        return "int8"
    if bits in (4, "4") or method in ("awq", "gptq", "bitsandbytes_4bit", "int4"):
        return "int4"
    return method or None


def facts_from_config(
    config: dict[str, Any], name: str, weight_bytes: int | None = None, source: str = ""
) -> ModelFacts:
    text = config.get("text_config") or config  # multimodal configs nest the language model
    heads = int(text.get("num_attention_heads") or 0)
    hidden = int(text.get("hidden_size") or 0)
    dtype = str(text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype") or "")
    return ModelFacts(
        name=name,
        model_type=str(config.get("model_type") or text.get("model_type") or "unknown"),
        layers=int(text.get("num_hidden_layers") or 0),
        heads=heads,
        kv_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(text.get("head_dim") or (hidden // heads if heads else 0)),
        hidden=hidden,
        vocab=int(text.get("vocab_size") or 0),
        max_positions=int(text.get("max_position_embeddings") or 0),
        dtype_bytes=_DTYPE_BYTES.get(dtype.replace("torch.", ""), 2.0),
        quantization=quantization_of(config) or quantization_of(text),
        weight_bytes=weight_bytes,
        weight_source=source,
    )


def weight_size(folder: Path) -> tuple[int | None, str]:
    """Bytes of weights: the safetensors index's total_size, else the weight files' sizes."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
        if total:
            return int(total), "safetensors index total_size"
    files = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".gguf")]
    if files:
        return sum(p.stat().st_size for p in files), "weight file sizes"
    return None, ""


def read_facts(folder: Path, name: str, params: float | None = None) -> ModelFacts:
    """Facts from a local model folder (config.json and weight files)."""
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    size, source = weight_size(folder)
    facts = facts_from_config(config, name, size, source)
    if params is not None:
        facts = ModelFacts(**{**facts.__dict__, "params": params})
    return facts
