"""Memory per GPU, checked against Korthikanti et al. 2022 (arXiv:2205.05198) and the
16-bytes-per-parameter mixed-precision Adam rule (Rajbhandari et al. 2020, ZeRO: 2 + 2 + 12)."""

from __future__ import annotations

import pytest

from shapewise.errors import InputError
from shapewise.model import (
    ModelShape,
    activation_bytes_per_layer,
    count_params,
    get_preset,
    memory_per_gpu,
)

# The paper's layer: MHA, GELU MLP of 4h, dropout, 2-byte activations.
PAPER = ModelShape.gpt(hidden_size=2048, num_attention_heads=16, num_hidden_layers=24,
                       vocab_size=51200, max_position_embeddings=4096)


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_paper_layer_is_34sbh_split_10_plus_24_over_t(tp: int) -> None:
    s, b, h = 2048, 4, 2048
    got = activation_bytes_per_layer(PAPER, micro_batch=b, seq_len=s, tp=tp)
    # FlashAttention: the 5·a·s/h softmax term is gone; sequence parallelism off (eq. 2)
    assert got * tp == s * b * h * (10 * tp + 24)
    if tp == 1:
        assert got == 34 * s * b * h


def test_llama_layer_by_hand() -> None:
    s, b, h, f = 4096, 1, 4096, 11008
    got = activation_bytes_per_layer(get_preset("llama-2-7b"), micro_batch=b, seq_len=s,
                                     dropout=False)
    # no dropout masks: norm inputs 4sbh + QKV input 2sbh + MLP input 2sbh = 8sbh,
    # Q, K, V 6sbh + attention output 2sbh, SwiGLU gate, up and product 3·2sbf
    assert got == s * b * (8 * h + 6 * h + 2 * h + 6 * f)
    gqa = activation_bytes_per_layer(get_preset("mistral-7b"), micro_batch=b, seq_len=s,
                                     dropout=False)
    # Mistral stores K and V of 8 heads · 128 = 1024 columns, and f = 14336
    assert gqa == s * b * (8 * h + 2 * (h + 2 * 1024) + 2 * h + 6 * 14336)


def test_llama_2_7b_states_are_16_bytes_per_param() -> None:
    n = 6_738_415_616
    m = memory_per_gpu(get_preset("llama-2-7b"), micro_batch=1, seq_len=4096)
    assert m["weights"] == m["gradients"] == 2 * n
    assert m["master_weights"] == 4 * n and m["optimizer_states"] == 8 * n
    assert sum(m[k] for k in ("weights", "gradients", "master_weights",
                              "optimizer_states")) == 16 * n
    assert m["total"] == sum(v for k, v in m.items() if k != "total")
    fp32 = memory_per_gpu(get_preset("llama-2-7b"), micro_batch=1, seq_len=4096, dtype="float32")
    assert fp32["weights"] == 4 * n and fp32["master_weights"] == 0  # no separate copy
    sgd = memory_per_gpu(get_preset("llama-2-7b"), micro_batch=1, seq_len=4096, optimizer="sgd")
    assert sgd["optimizer_states"] == 4 * n  # momentum only


def test_activations_logits_and_recompute() -> None:
    shape = PAPER
    s, b, h, L, v = 2048, 2, 2048, 24, 51200
    layer = 34 * s * b * h
    m = memory_per_gpu(shape, micro_batch=b, seq_len=s)
    assert m["activations"] == L * layer + s * b * h  # + the embedding dropout mask
    # final norm input and logits GEMM input (2 bytes each), fp32 logits for the loss
    assert m["logits"] == 4 * s * b * h + 4 * s * b * v
    r = memory_per_gpu(shape, micro_batch=b, seq_len=s, recompute=True)
    # full recompute: each layer's 2sbh input, plus one layer rebuilt during backward
    assert r["activations"] == L * 2 * s * b * h + layer + s * b * h
    assert r["weights"] == m["weights"] and r["logits"] == m["logits"]


def test_tensor_parallel_splits() -> None:
    shape = get_preset("llama-2-7b")
    m = memory_per_gpu(shape, micro_batch=1, seq_len=4096, tp=4)
    assert m["weights"] == 2 * count_params(shape, tp=4)
    assert m["logits"] == 4 * 4096 * 4096 + 4 * 4096 * 32000 // 4  # vocab-parallel logits
    with pytest.raises(InputError, match=r"^tp: 3 does not divide num_attention_heads"):
        memory_per_gpu(shape, micro_batch=1, seq_len=4096, tp=3)


def test_vit_memory() -> None:
    shape = get_preset("vit-base-16")
    m = memory_per_gpu(shape, micro_batch=32)
    s, b, h = 197, 32, 768
    assert m["activations"] == 12 * 34 * s * b * h + s * b * h
    # final LayerNorm input, classifier input (class tokens only), fp32 logits
    assert m["logits"] == 2 * s * b * h + 2 * b * h + 4 * b * 1000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dtype": "fp8"}, "dtype"),
        ({"dtype": "int4"}, "dtype"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"micro_batch": 0}, "micro_batch"),
        ({"tp": 0}, "tp"),
        ({"recompute": 1}, "recompute"),
        ({"dropout": "no"}, "dropout"),
        ({"seq_len": None}, "seq_len"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, field: str) -> None:
    args = {"micro_batch": 1, "seq_len": 1024, **kwargs}
    with pytest.raises(InputError, match=rf"^{field}: "):
        memory_per_gpu(get_preset("gpt2"), **args)
