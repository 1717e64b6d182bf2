"""A tiny Stable Diffusion pipeline with random weights, built locally in a second or two.

Real diffusers components at toy sizes (UNet2DConditionModel, AutoencoderKL, CLIPTextModel) and
a CLIP tokenizer over a byte-level vocabulary with no merges (every merge would have to join
tokens already in the vocabulary; with none, the tokenizer is trivially consistent).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def _byte_alphabet() -> list[str]:
    # GPT-2/CLIP's printable stand-ins for the 256 byte values.
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    visible += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in visible:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def build_tiny_pipeline(folder: Path) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab_dir = folder / "_vocab"
    vocab_dir.mkdir(exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    for char in _byte_alphabet():
        tokens += [char, char + "</w>"]
    (vocab_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(vocab_dir / "vocab.json"), str(vocab_dir / "merges.txt"), model_max_length=32
    )

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32,
            intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            vocab_size=len(tokens), max_position_embeddings=32,
        )
    )  # fmt: skip
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        norm_num_groups=32,
    )  # fmt: skip
    # Three VAE blocks: latents are a quarter of the image side, so 128 px stays cheap.
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=32,
    )  # fmt: skip
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=EulerDiscreteScheduler(steps_offset=1), safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipeline.save_pretrained(folder)
    shutil.rmtree(vocab_dir)
    return folder
