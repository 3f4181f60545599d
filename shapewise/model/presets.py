"""Named shapes of public models, each written from its published config.json.

The text-model presets equal what :func:`shapewise.model.hf.from_hf_config` reads from the
fixture configs in ``tests/fixtures/hf/`` (tests check both ways), and their parameter
counts match the published ones exactly (``tests/model/test_params.py`` cites each).

>>> get_preset("mistral-7b").num_key_value_heads
8
"""

from __future__ import annotations

import difflib

from shapewise.errors import InputError
from shapewise.model.shape import ModelShape

PRESETS: dict[str, ModelShape] = {
    # openai-community/gpt2: 12 layers, 768 wide, the unpadded 50257-token BPE, tied
    "gpt2": ModelShape.gpt(
        name="gpt2", hidden_size=768, num_attention_heads=12, num_hidden_layers=12,
        vocab_size=50257, max_position_embeddings=1024,
    ),
    "gpt2-medium": ModelShape.gpt(
        name="gpt2-medium", hidden_size=1024, num_attention_heads=16, num_hidden_layers=24,
        vocab_size=50257, max_position_embeddings=1024,
    ),
    # EleutherAI/pythia-*: GPT-NeoX, rotary on 25% of each head, untied embed_out,
    # parallel residual, vocabulary already padded to 50304
    "pythia-160m": ModelShape.gpt(
        name="pythia-160m", hidden_size=768, num_attention_heads=12, num_hidden_layers=12,
        intermediate_size=3072, vocab_size=50304, max_position_embeddings=2048,
        tie_word_embeddings=False, position_embedding="rotary", rotary_pct=0.25,
        parallel_residual=True,
    ),
    "pythia-2.8b": ModelShape.gpt(
        name="pythia-2.8b", hidden_size=2560, num_attention_heads=32, num_hidden_layers=32,
        intermediate_size=10240, vocab_size=50304, max_position_embeddings=2048,
        tie_word_embeddings=False, position_embedding="rotary", rotary_pct=0.25,
        parallel_residual=True,
    ),
    # meta-llama/Llama-2-7b-hf
    "llama-2-7b": ModelShape.llama(
        name="llama-2-7b", hidden_size=4096, num_attention_heads=32, num_key_value_heads=32,
        num_hidden_layers=32, intermediate_size=11008, vocab_size=32000,
        max_position_embeddings=4096,
    ),
    # mistralai/Mistral-7B-v0.1: GQA with 8 KV heads, 4096-token sliding window
    "mistral-7b": ModelShape.llama(
        name="mistral-7b", hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
        num_hidden_layers=32, intermediate_size=14336, vocab_size=32000,
        max_position_embeddings=32768, sliding_window=4096,
    ),
    # Qwen/Qwen2-0.5B: tied, biases on q/k/v only, 2 KV heads
    "qwen2-0.5b": ModelShape.llama(
        name="qwen2-0.5b", hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
        num_hidden_layers=24, intermediate_size=4864, vocab_size=151936,
        max_position_embeddings=131072, tie_word_embeddings=True, qkv_bias=True,
    ),
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T
    "tinyllama-1.1b": ModelShape.llama(
        name="tinyllama-1.1b", hidden_size=2048, num_attention_heads=32, num_key_value_heads=4,
        num_hidden_layers=22, intermediate_size=5632, vocab_size=32000,
        max_position_embeddings=2048,
    ),
    # google/vit-{base,large}-patch16-224 (ViTForImageClassification, ImageNet-1k head);
    # ViT-H/14 from Dosovitskiy et al. 2021, Table 1, with the same 1000-class head
    "vit-base-16": ModelShape.vit(
        name="vit-base-16", hidden_size=768, num_attention_heads=12, num_hidden_layers=12,
        intermediate_size=3072, image_size=224, patch_size=16, num_labels=1000,
    ),
    "vit-large-16": ModelShape.vit(
        name="vit-large-16", hidden_size=1024, num_attention_heads=16, num_hidden_layers=24,
        intermediate_size=4096, image_size=224, patch_size=16, num_labels=1000,
    ),
    "vit-huge-14": ModelShape.vit(
        name="vit-huge-14", hidden_size=1280, num_attention_heads=16, num_hidden_layers=32,
        intermediate_size=5120, image_size=224, patch_size=14, num_labels=1000,
    ),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> ModelShape:
    """The preset called ``name`` (case-insensitive); InputError lists the known ones."""
    if not isinstance(name, str):
        raise InputError(f"preset: expected a name, got {name!r}")
    key = name.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    close = difflib.get_close_matches(key, PRESETS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(f"preset: unknown model {name!r}{hint}; known: {', '.join(list_presets())}")
