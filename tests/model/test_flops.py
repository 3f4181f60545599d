from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shapewise.errors import InputError
from shapewise.model import ModelShape, count_params, flops_per_token, get_preset, step_flops
from shapewise.model.flops import PARTS, attention_forward_flops_per_sequence
from shapewise.model.params import param_tensors


def test_gpt2_small_by_hand() -> None:
    h, L, v, s = 768, 12, 50257, 1024
    f = flops_per_token(get_preset("gpt2"), seq_len=s)
    # per layer: c_attn h·3h + c_proj h·h + c_fc h·4h + c_proj 4h·h = 12h² multiply-adds
    assert f["dense_forward"] == 2 * L * 12 * h * h == 169_869_312
    # causal QKᵀ + AV: half of 4·s·h per layer
    assert f["attention_forward"] == L * 2 * s * h == 18_874_368
    # logits on the tied wte, vocabulary as given (not padded)
    assert f["head_forward"] == 2 * h * v == 77_194_752
    assert f["embedding_forward"] == 0
    assert f["forward"] == 169_869_312 + 18_874_368 + 77_194_752 == 265_938_432
    assert f["backward"] == 2 * f["forward"]
    assert f["total"] == f["hardware_total"] == 3 * 265_938_432  # no recompute
    assert f["recompute"] == 0


def test_llama_counts_swiglu_and_gqa_matrices_by_shape() -> None:
    h, L, f_, s = 2048, 22, 5632, 2048
    kv = 4 * 64  # TinyLlama: 4 KV heads of 64 dims
    got = flops_per_token(get_preset("tinyllama-1.1b"), seq_len=s)
    macs = h * h + 2 * h * kv + h * h + 3 * h * f_  # q, k + v (narrow), o, gate + up + down
    assert got["dense_forward"] == 2 * L * macs
    assert got["attention_forward"] == L * 2 * s * h  # query heads, not KV heads, set the cost


def test_vit_base_by_hand_and_against_torchvision() -> None:
    shape = get_preset("vit-base-16")
    h, L, s = 768, 12, 197
    step = step_flops(shape, micro_batch=1)
    assert step["dense_forward"] == 2 * s * L * 12 * h * h
    assert step["attention_forward"] == L * 4 * s * s * h  # encoder: no causal halving
    assert step["embedding_forward"] == 2 * 196 * (3 * 16 * 16) * h  # patch GEMM
    assert step["head_forward"] == 2 * h * 1000  # classifier on the class token only
    # torchvision lists ViT_B_16_Weights.IMAGENET1K_V1 at "GFLOPS 17.56", counting a
    # multiply-add as one operation: our forward is twice that.
    assert round(step["forward"] / 2 / 1e9, 2) == 17.56


def test_matches_6n_plus_attention() -> None:
    # Kaplan et al. 2020 / PaLM: training FLOPs per token = 6·N + 6·L·s·h (causal).
    # Exact when N counts the weight matrices that run as GEMMs: every layer matrix plus the
    # logits matrix (tied or not); lookups, biases and norms cost no GEMM FLOPs.
    for name, s in [("llama-2-7b", 4096), ("mistral-7b", 4096), ("gpt2", 1024),
                    ("qwen2-0.5b", 2048), ("pythia-2.8b", 2048)]:
        shape = get_preset(name)
        n_gemm = sum(p.layers * p.numel for p in param_tensors(shape)
                     if p.name.endswith("proj.weight"))
        n_gemm += shape.vocab_size * shape.hidden_size
        L, h = shape.num_hidden_layers, shape.hidden_size
        f = flops_per_token(shape, seq_len=s)
        assert f["total"] == 6 * n_gemm + 6 * L * s * h, name
        # Kaplan's non-embedding N plus the logits GEMM: off only by biases and norms
        kaplan = 6 * (count_params(shape, embedding=False) + shape.vocab_size * h) + 6 * L * s * h
        assert abs(f["total"] / kaplan - 1) < 0.001, name
        # the textbook 6·N over all parameters also counts the embedding lookup as a GEMM:
        # an overestimate by about the input table's share (4.4% for Pythia-2.8B)
        approx = 6 * count_params(shape) + 6 * L * s * h
        assert 0 < 1 - f["total"] / approx < 0.05, name


def test_recompute_is_hardware_work_only() -> None:
    shape = get_preset("llama-2-7b")
    plain = flops_per_token(shape, seq_len=4096)
    again = flops_per_token(shape, seq_len=4096, recompute=True)
    assert again["total"] == plain["total"]  # MFU never counts recompute
    # one more forward of the layers; the output layer is outside the checkpoints
    assert again["recompute"] == plain["dense_forward"] + plain["attention_forward"]
    assert again["hardware_total"] == plain["total"] + again["recompute"]
    # close to the 8N rule of thumb: 4 forwards instead of 3
    assert 1.3 < again["hardware_total"] / plain["total"] < 4 / 3


def test_step_is_per_token_times_tokens() -> None:
    shape = get_preset("gpt2")
    step = step_flops(shape, micro_batch=8, seq_len=1024, recompute=True)
    per_token = flops_per_token(shape, seq_len=1024, recompute=True)
    assert all(step[k] == per_token[k] * 8 * 1024 for k in step)
    assert all(isinstance(v, int) for v in step.values())


def test_sliding_window() -> None:
    mistral = get_preset("mistral-7b")  # window 4096
    h, L = 4096, 32
    # at or below the window, plain causal attention
    assert flops_per_token(mistral, seq_len=4096)["attention_forward"] == L * 2 * 4096 * h
    # s = 8192: query i sees min(i, 4096) keys: s·w - w²/2 = 3/4 of the causal s²/2
    s, w = 8192, 4096
    per_seq = attention_forward_flops_per_sequence(mistral, s)
    assert per_seq == 4 * h * (s * w - w * w // 2)
    assert per_seq * 4 == 3 * attention_forward_flops_per_sequence(
        mistral.replace(sliding_window=None), s)


def test_seq_len_errors() -> None:
    with pytest.raises(InputError, match=r"^seq_len: required"):
        flops_per_token(get_preset("gpt2"))
    with pytest.raises(InputError, match=r"^seq_len: 2048 exceeds max_position_embeddings 1024"):
        flops_per_token(get_preset("gpt2"), seq_len=2048)
    with pytest.raises(InputError, match=r"^seq_len: must be positive"):
        flops_per_token(get_preset("llama-2-7b"), seq_len=0)
    with pytest.raises(InputError, match=r"^seq_len: 256 differs from this ViT's 197"):
        flops_per_token(get_preset("vit-base-16"), seq_len=256)
    assert flops_per_token(get_preset("vit-base-16"), seq_len=197)["forward"] > 0
    with pytest.raises(InputError, match=r"^micro_batch: must be positive"):
        step_flops(get_preset("gpt2"), micro_batch=0, seq_len=128)
    with pytest.raises(InputError, match=r"^recompute: "):
        step_flops(get_preset("gpt2"), micro_batch=1, seq_len=128, recompute="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ properties
text_shapes = st.builds(
    lambda heads, d, g_index, layers, f, v, arch: ModelShape(
        arch=arch, hidden_size=heads * d, num_attention_heads=heads,
        num_key_value_heads=[g for g in range(1, heads + 1) if heads % g == 0][
            g_index % len([g for g in range(1, heads + 1) if heads % g == 0])],
        num_hidden_layers=layers, intermediate_size=f, vocab_size=v,
        max_position_embeddings=1 << 16),
    st.integers(1, 32), st.integers(1, 256), st.integers(0, 10), st.integers(1, 64),
    st.integers(1, 20_000), st.integers(1, 100_000), st.sampled_from(["gpt", "llama"]),
)


@given(text_shapes, st.integers(1, 1 << 15))
def test_causal_attention_is_exactly_half(shape: ModelShape, s: int) -> None:
    causal = flops_per_token(shape, seq_len=s)["attention_forward"]
    full = flops_per_token(shape, seq_len=s, causal=False)["attention_forward"]
    assert 2 * causal == full
    assert full == 4 * s * shape.hidden_size * shape.num_hidden_layers


@given(text_shapes, st.integers(1, 8192))
def test_gqa_with_g_equal_a_is_mha(shape: ModelShape, s: int) -> None:
    a, h = shape.num_attention_heads, shape.hidden_size
    mha = shape.replace(num_key_value_heads=a)
    f = flops_per_token(mha, seq_len=s)
    mlp = (3 if shape.activation == "swiglu" else 2) * h * shape.intermediate_size
    # MHA: q, k, v, o all h×h
    assert f["dense_forward"] == 2 * shape.num_hidden_layers * (4 * h * h + mlp)
    # and GQA only ever removes K/V work; attention BMMs do not depend on g
    gqa = flops_per_token(shape, seq_len=s)
    assert gqa["dense_forward"] <= f["dense_forward"]
    assert gqa["attention_forward"] == f["attention_forward"]


@given(text_shapes, st.integers(1, 4096), st.integers(1, 4096), st.booleans())
def test_backward_twice_forward_and_window_monotone(shape: ModelShape, s: int, w: int,
                                                    recompute: bool) -> None:
    f = step_flops(shape, micro_batch=1, seq_len=s, recompute=recompute)
    assert f["backward"] == 2 * f["forward"] and f["total"] == 3 * f["forward"]
    assert f["forward"] == sum(f[k] for k in PARTS)
    windowed = attention_forward_flops_per_sequence(shape.replace(sliding_window=w), s)
    wider = attention_forward_flops_per_sequence(shape.replace(sliding_window=w + 1), s)
    full = attention_forward_flops_per_sequence(shape, s)
    assert 0 < windowed <= wider <= full
