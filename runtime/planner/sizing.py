"""Memory arithmetic: the platform's sizing rule for weights, plus the KV cache."""

from __future__ import annotations

from runtime.planner.model import ModelFacts

GB = 1024**3
# Architecture overheads of the Chutes sizing rule (activations, buffers, CUDA graphs…).
_OVERHEAD = {"deepseek": 1.5, "phi": 1.2, "falcon": 1.2, "gpt_neox": 1.2, "mpt": 1.2}
_QUANT_FACTOR = {"fp8": 0.5, "int8": 0.5, "int4": 0.25}


def overhead(model_type: str) -> float:
    lowered = model_type.lower()
    return next((f for key, f in _OVERHEAD.items() if lowered.startswith(key)), 1.4)


def weights_need(facts: ModelFacts) -> tuple[float, str]:
    """Bytes the weights need on GPUs, overhead included, and how that was worked out."""
    factor = overhead(facts.model_type)
    if facts.weight_bytes is not None:
        # File sizes already reflect quantization; the quantization factor applies only to
        # the parameters × 2 estimate (applying it twice would halve a quantized model again).
        need = facts.weight_bytes * factor
        how = (f"weights {facts.weight_bytes / GB:.1f} GB ({facts.weight_source}) × "
               f"{factor} {_kind(facts)} overhead")  # fmt: skip
        return need, how
    if facts.params is None:
        raise ValueError("no weight size and no parameter count")
    quant = _QUANT_FACTOR.get(facts.quantization or "", 1.0)
    need = facts.params * 2 * factor * quant
    how = f"{facts.params / 1e9:.1f}B params × 2 bytes × {factor} {_kind(facts)} overhead"
    if quant != 1.0:
        how += f" × {quant} ({facts.quantization})"
    return need, how


def _kind(facts: ModelFacts) -> str:
    return facts.model_type if facts.model_type != "unknown" else "default"


def kv_bytes_per_token(facts: ModelFacts, dtype_bytes: float = 2.0) -> float:
    """2 (K and V) × layers × KV heads × head_dim × bytes."""
    return 2 * facts.layers * facts.kv_heads * facts.head_dim * dtype_bytes
