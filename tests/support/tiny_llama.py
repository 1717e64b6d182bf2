"""A tiny Llama that vLLM's CPU build can serve, built from nothing in a few seconds.

Random weights; a byte-level BPE tokenizer trained on the spot; a ChatML chat template that
renders `tools` the way the hermes tool parser expects (`<tool_call>…</tool_call>`). head_dim
is 32 because vLLM's CPU attention rejects 16.
"""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou can call these tools:\n<tools>"
    "{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>\n"
    'Answer with <tool_call>{"name": <name>, "arguments": <args>}</tool_call><|im_end|>\n'
    "{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.content is string %}{{ message.content }}"
    "{% elif message.content %}{% for part in message.content %}"
    "{% if part.type == 'text' %}{{ part.text }}{% endif %}{% endfor %}{% endif %}"
    "{% if message.tool_calls %}{% for call in message.tool_calls %}"
    "<tool_call>{{ call.function | tojson }}</tool_call>{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]

CORPUS = [
    "The capital of France is Paris. The weather today is sunny and warm.",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    "Hello! How can I help you today? I am a small test model.",
    "user assistant system tool function json schema answer question",
    "0 1 2 3 4 5 6 7 8 9 true false null [ ] { } : , \" ' - _ . ! ?",
]


def build_tiny_llama(folder: Path, hidden_size: int = 64, layers: int = 2) -> Path:
    """Write a servable model folder (safetensors + tokenizer + chat template) into `folder`.

    The defaults make the smallest model vLLM serves; the routing bench asks for a wider,
    deeper one so that computing a long prompt costs more than reading it from the cache."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 50, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<tool_call>", "</tool_call>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(4, hidden_size // 32),
        num_key_value_heads=max(4, hidden_size // 32),
        head_dim=32,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "generation_config.json").write_text(
        json.dumps({"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id})
    )
    return folder
