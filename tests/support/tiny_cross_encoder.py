"""A tiny BERT cross-encoder (one relevance label) that vLLM's CPU build and
sentence-transformers' CrossEncoder both load, built from nothing in a second.

Random weights, drawn ten times wider than BERT's default (initializer_range 0.2): at the
default every pair scores about 0.504, and a comparison within 1e-5 would mean nothing; here
the scores spread over (0.4, 0.8). A WordPiece tokenizer trained on the spot, with BERT's
pair template.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The capital of France is Paris.",
    "Berlin is the capital of Germany.",
    "what is the capital of france",
    "cats and dogs like sunny weather, not rain",
    "0 1 2 3 4 5 6 7 8 9",
]


def build_tiny_cross_encoder(folder: Path) -> Path:
    import torch
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    wordpiece.train_from_iterator(CORPUS * 20, trainer=trainer)
    cls, sep = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    wordpiece.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        num_labels=1,
        initializer_range=0.2,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
