"""FlashAttention model: FLOP convention, causal skipping, head-dim buckets, GQA."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shapewise as sw
from shapewise.errors import InputError


def test_flop_convention_causal_counts_visible_pairs() -> None:
    full = sw.attention_flops(batch=2, heads=8, seq_len=1024, head_dim=128, causal=False)
    assert full == 4 * 2 * 8 * 1024 * 1024 * 128
    causal = sw.attention_flops(batch=2, heads=8, seq_len=1024, head_dim=128, causal=True)
    assert causal == full / 2  # co-design.md §2: causal halves the work, exactly
    chunk = sw.attention_flops(batch=1, heads=1, seq_len=256, head_dim=64, causal=True,
                               seq_len_kv=1024)  # 256 new queries after 768 cached keys
    assert chunk == 4 * 64 * (256 * 768 + 256 * 256 / 2)
    bwd = sw.attention_flops(batch=2, heads=8, seq_len=1024, head_dim=128, causal=True,
                             backward=True)
    assert bwd == 2 * causal


@pytest.mark.parametrize("s,skv,w", [(1024, 1024, 256), (1024, 1024, 1024), (1024, 1024, 4096),
                                     (256, 1024, 300), (256, 1024, 700), (256, 1024, 1000),
                                     (7, 7, 3), (1, 5000, 4096)])
def test_sliding_window_counts_the_keys_each_query_sees(s: int, skv: int, w: int) -> None:
    # the half-diagonal convention: query i (after skv - s cached keys) sees
    # offset + i + 1/2 keys without a window, at most w with one
    offset = skv - s
    brute = sum(min(offset + i + 0.5, w) for i in range(s))
    flops = sw.attention_flops(batch=1, heads=1, seq_len=s, seq_len_kv=skv, head_dim=64,
                               window=w)
    assert flops == pytest.approx(4 * 64 * brute, rel=1e-12)


def test_sliding_window_matches_the_model_flops_and_skips_blocks() -> None:
    from shapewise.model.flops import attention_forward_flops_per_sequence
    from shapewise.model.presets import get_preset

    m = get_preset("mistral-7b")  # window 4096, 32 heads x 128
    for s in (2048, 4096, 16384):
        assert sw.attention_flops(batch=1, heads=32, seq_len=s, head_dim=128,
                                  window=4096) == attention_forward_flops_per_sequence(m, s)
    kw = dict(batch=1, heads=32, kv_heads=8, head_dim=128, gpu="h100")
    assert sw.attention_time(seq_len=4096, window=4096, **kw) == sw.attention_time(
        seq_len=4096, **kw)
    full = sw.attention_time(seq_len=32768, **kw)
    windowed = sw.attention_time(seq_len=32768, window=4096, **kw)
    # 32768·4096 − 4096²/2 visible pairs against 32768²/2: 0.234 of the work
    assert 0.2 < windowed / full < 0.3
    bwd = sw.explain_attention(seq_len=32768, window=4096, backward=True, **kw)
    assert bwd.flops == 2 * sw.attention_flops(batch=1, heads=32, seq_len=32768,
                                               head_dim=128, window=4096)


def test_a_window_needs_causal_attention_and_a_positive_size() -> None:
    kw = dict(batch=1, heads=2, seq_len=128, head_dim=64, gpu="h100")
    with pytest.raises(InputError, match="window: a sliding window needs causal"):
        sw.attention_time(causal=False, window=64, **kw)
    with pytest.raises(InputError, match="window: must be a positive integer"):
        sw.attention_time(window=0, **kw)


def test_causal_is_about_half_the_time_of_full() -> None:
    kw = dict(batch=4, heads=32, seq_len=8192, head_dim=128, gpu="h100")
    ratio = sw.attention_time(causal=True, **kw) / sw.attention_time(causal=False, **kw)
    assert 0.45 < ratio < 0.65


def test_backward_costs_more_than_forward() -> None:
    kw = dict(batch=4, heads=32, seq_len=4096, head_dim=128, gpu="a100")
    ratio = sw.attention_time(backward=True, **kw) / sw.attention_time(**kw)
    assert 2.0 < ratio < 4.5


def test_head_dim_80_runs_the_96_kernel_and_is_slower_per_flop_than_128() -> None:
    ex80 = sw.explain_attention(batch=4, heads=32, seq_len=2048, head_dim=80, gpu="a100")
    ex128 = sw.explain_attention(batch=4, heads=20, seq_len=2048, head_dim=128, gpu="a100")
    assert ex80.kernel_head_dim == 96 and "96-wide" in ex80.note
    assert ex128.tflops > ex80.tflops


def test_small_heads_are_slower_per_flop() -> None:
    r = {d: sw.explain_attention(batch=8, heads=4096 // d, seq_len=2048, head_dim=d,
                                 gpu="h100").tflops for d in (32, 64, 128)}
    assert r[32] < r[64] < r[128]


def test_head_dim_not_multiple_of_8_falls_back_to_materialized() -> None:
    ex = sw.explain_attention(batch=1, heads=8, seq_len=1024, head_dim=100, gpu="h100")
    assert ex.path == "materialized" and "not a multiple of 8" in ex.note
    fused = sw.explain_attention(batch=1, heads=8, seq_len=1024, head_dim=104, gpu="h100")
    assert fused.path == "fused" and fused.time_s < ex.time_s


def test_gqa_reads_fewer_bytes_same_flops() -> None:
    kw = dict(batch=1, heads=32, seq_len=4096, head_dim=128, gpu="h100")
    mha = sw.explain_attention(**kw)
    gqa = sw.explain_attention(kv_heads=8, **kw)
    assert gqa.flops == mha.flops and gqa.memory_s < mha.memory_s


def test_bad_input() -> None:
    with pytest.raises(InputError, match="kv_heads"):
        sw.attention_time(batch=1, heads=32, seq_len=128, head_dim=64, gpu="h100", kv_heads=5)
    with pytest.raises(InputError, match="head_dim"):
        sw.attention_time(batch=1, heads=32, seq_len=128, head_dim=0, gpu="h100")
    with pytest.raises(InputError, match="seq_len_kv"):
        sw.attention_time(batch=1, heads=2, seq_len=128, head_dim=64, gpu="h100",
                          seq_len_kv=64, causal=True)


@settings(max_examples=500, deadline=None)
@given(b=st.integers(1, 64), a=st.integers(1, 128), s=st.integers(1, 32768),
       d=st.sampled_from([16, 32, 40, 64, 80, 96, 100, 128, 192, 256, 320]),
       causal=st.booleans(), backward=st.booleans(),
       gpu=st.sampled_from(["h100", "a100", "mi300x", "mi250x-gcd", "b200", "v100"]))
def test_attention_time_finite_positive_above_floor(b: int, a: int, s: int, d: int,
                                                    causal: bool, backward: bool,
                                                    gpu: str) -> None:
    g = sw.get_gpu(gpu)
    dtype = "fp16"
    t = sw.attention_time(batch=b, heads=a, seq_len=s, head_dim=d, gpu=g, dtype=dtype,
                          causal=causal, backward=backward)
    flops = sw.attention_flops(batch=b, heads=a, seq_len=s, head_dim=d, causal=causal,
                               backward=backward)
    assert math.isfinite(t) and t > 0
    assert t >= flops / g.peak_flops(dtype)
