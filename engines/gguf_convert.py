"""Convert a GGUF checkpoint into a safetensors model folder any engine can load.

Runs as a script in the engine's interpreter (`python engines/gguf_convert.py MODEL.gguf OUT`),
so it imports nothing from chutebox: only transformers (with its `gguf` support) and torch. The
weights are dequantized; the folder carries the tokenizer and chat template from the GGUF.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def convert(gguf: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the engine's environment
        sys.exit(
            f"GGUF conversion needs transformers, torch and gguf: {exc}. "
            "Install them with: pip install 'chutebox[cpu]' (or [vllm])"
        )
    started = time.monotonic()
    print(f"loading {gguf.name} (dequantizing; this takes a while once)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The weights are plain bf16 now. transformers still marks the model as GGUF-quantized,
    # which refuses to save and would send the engine looking for quantized kernels: unmark it.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - nn.Module typing hides these attributes
    setattr(model, "is_quantized", False)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    print(f"saving safetensors to {out}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    print(f"prepared in {time.monotonic() - started:.1f}s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: gguf_convert.py MODEL.gguf OUT_DIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
