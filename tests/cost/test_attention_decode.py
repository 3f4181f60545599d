"""Decode / short-query attention: a memory-bound split-KV kernel (cost/attention_decode.py)."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shapewise as sw
from shapewise.cost.attention import explain_attention
from shapewise.cost.attention_decode import (
    DECODE_MAX_ROWS,
    DECODE_PRIOR,
    decode_params,
    explain_decode,
    is_short_query,
    num_splits,
)
from shapewise.errors import InputError

A100 = sw.get_gpu("a100-sxm-80gb")
# Llama-2-70B at TP=2 (the vidur rows): 32 query heads, 4 KV heads, head dim 128
LLAMA = dict(heads=32, kv_heads=4, head_dim=128)


def _decode(gpu: str = "a100", **kw: object) -> float:
    args = {**LLAMA, "batch": 1, "seq_len": 1, "seq_len_kv": 4096, "gpu": gpu,
            "dtype": "fp16", **kw}
    return sw.attention_time(**args)  # type: ignore[arg-type]


def _explain(gpu: str, **kw: object):  # type: ignore[no-untyped-def]
    return explain_decode(gpu=sw.get_gpu(gpu), **kw)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(gpu=st.sampled_from(["a100", "h100", "h200", "b200", "mi300x", "l4"]),
       b=st.integers(1, 256), kvh=st.sampled_from([1, 2, 4, 8, 16]),
       group=st.sampled_from([1, 2, 4, 8]), q=st.integers(1, 8),
       kv=st.integers(1, 1 << 17), d=st.sampled_from([64, 96, 128, 256]))
def test_positive_finite_and_non_decreasing_in_cache_and_batch(
        gpu: str, b: int, kvh: int, group: int, q: int, kv: int, d: int) -> None:
    """Non-decreasing at a fixed split count. Across a change of flash-attn's split count
    the kernel itself is not monotone: the vidur A100 timings fall from 33 to 24 µs going
    from batch 6 to 7 at a 1024-key cache, where the heuristic starts splitting."""
    heads = kvh * group
    q = min(q, max(1, DECODE_MAX_ROWS // group))
    kw = dict(heads=heads, kv_heads=kvh, seq_len=q, head_dim=d, head_dim_v=d,
              dtype="fp16")
    routed = explain_attention(batch=b, seq_len_kv=kv + q, gpu=gpu, causal=True,
                               **{k: v for k, v in kw.items() if k != "dtype"})
    assert routed.path == "decode"
    e = _explain(gpu, batch=b, keys=kv + q, **kw)
    assert 0 < e.time_s < math.inf and math.isfinite(routed.tflops)
    assert e.kv_bytes / e.time_s <= sw.get_gpu(gpu).bandwidth  # never past the datasheet
    longer = _explain(gpu, batch=b, keys=2 * kv + q, **kw)
    bigger = _explain(gpu, batch=2 * b, keys=kv + q, **kw)
    for other in (longer, bigger):
        if other.splits == e.splits:
            assert other.time_s >= e.time_s
    # with a block table as wide as the longer cache the splits agree: then it is slower
    wide = _explain(gpu, batch=b, keys=kv + q, kv_capacity=2 * kv + q, **kw)
    assert longer.time_s >= wide.time_s


def test_cache_sweep_is_monotone_on_a_fine_grid() -> None:
    kw = dict(heads=32, kv_heads=4, seq_len=1, head_dim=128, head_dim_v=128, dtype="fp16")
    for b in (1, 3, 8, 27, 28, 64, 128):
        runs = [_explain("a100", batch=b, keys=kv, **kw) for kv in range(2, 40_000, 97)]
        for e0, e1 in itertools.pairwise(runs):
            if e0.splits == e1.splits:
                assert e1.time_s >= e0.time_s, b
        assert runs[-1].time_s > runs[0].time_s


def test_big_cache_is_memory_bound_at_the_fitted_bandwidth() -> None:
    # batch 128 × 32k keys: 8.6 GB of K/V; time ~ bytes / (hbm_fraction · bandwidth)
    e = explain_attention(batch=128, seq_len=1, seq_len_kv=32768, gpu="a100", dtype="fp16",
                          **LLAMA)
    p, origin = decode_params(A100)
    assert "fitted" in origin
    kv_bytes = 128 * 32768 * 4 * 128 * 2 * 2
    floor = kv_bytes / (p.hbm_fraction * A100.bandwidth)
    assert e.path == "decode" and e.memory_s > 0.95 * e.time_s and e.compute_s == 0
    assert floor <= e.time_s <= 1.1 * floor
    assert e.time_s > kv_bytes / A100.bandwidth  # never faster than the datasheet


def test_decode_is_far_below_the_compute_bound_price_for_batch_1() -> None:
    # the price the tiled FlashAttention model (explain_attention's fused path) gives the
    # same call: one query row in a 128-row tile per head, compute-bound (~160 µs at 4k
    # keys on A100); the vidur A100 op time is 18 µs
    from shapewise.cost.attention import (
        BACKENDS,
        fused_params,
        fused_time,
        kernel_tiles,
    )

    e = explain_attention(batch=1, seq_len=1, seq_len_kv=4096, gpu="a100", dtype="fp16",
                          **LLAMA)
    prm, _ = fused_params(A100, e.backend, "fp16", False)
    tiled = fused_time(A100, "fp16", prm, batch=1, heads=32, kv_heads=4, seq_len=1,
                       seq_len_kv=4096, head_dim_k=128, head_dim_vk=128, head_dim=128,
                       head_dim_v=128, causal=True, window=None,
                       tiles=kernel_tiles(BACKENDS[e.backend], A100, 128, False),
                       backward=False)[0]
    assert e.path == "decode"
    assert e.time_s < tiled / 5
    assert 12e-6 < e.time_s < 25e-6


def test_small_batch_is_latency_bound_not_bandwidth_bound() -> None:
    # one sequence cannot fill HBM: achieved bandwidth well under the fitted share
    e = explain_attention(batch=1, seq_len=1, seq_len_kv=4096, gpu="a100", dtype="fp16",
                          **LLAMA)
    kv_bytes = 4096 * 4 * 128 * 2 * 2
    assert kv_bytes / e.time_s < 0.5 * decode_params(A100)[0].hbm_fraction * A100.bandwidth


def test_split_heuristic_matches_flash_attn() -> None:
    # flash_api.cpp num_splits_heuristic on 108 SMs: enough CTAs, no split
    assert num_splits(88, 108, 32) == 1
    # batch 8 × 4 KV heads = 32 CTAs, 32 key blocks: 3 splits (96 CTAs, 0.89 of a wave)
    assert num_splits(32, 108, 32) == 3
    assert num_splits(16, 108, 32) == 6
    assert num_splits(4, 108, 32) == 16  # 2 blocks each (32 would tie)
    assert num_splits(4, 108, 1) == 1


def test_routing_crossover() -> None:
    # q_len 1 always; a few tokens while q_len · group fits one 64-row tile; never backward,
    # never self-attention without a cache, never long queries
    assert is_short_query(seq_len=1, seq_len_kv=1, heads=32, kv_heads=4, backward=False)
    assert is_short_query(seq_len=8, seq_len_kv=4096, heads=32, kv_heads=4, backward=False)
    assert not is_short_query(seq_len=9, seq_len_kv=4096, heads=32, kv_heads=4,
                              backward=False)
    assert not is_short_query(seq_len=1, seq_len_kv=4096, heads=32, kv_heads=4,
                              backward=True)
    assert not is_short_query(seq_len=64, seq_len_kv=64, heads=8, kv_heads=8,
                              backward=False)
    long = explain_attention(batch=1, seq_len=4096, gpu="a100", dtype="fp16", **LLAMA)
    assert long.path == "fused"
    bwd = explain_attention(batch=1, seq_len=1, seq_len_kv=4096, gpu="a100", dtype="fp16",
                            backward=True, **LLAMA)
    assert bwd.path == "fused"


def test_math_backend_keeps_the_materialised_path() -> None:
    e = explain_attention(batch=1, seq_len=1, seq_len_kv=4096, gpu="a100", dtype="fp16",
                          backend="sdpa-math", **LLAMA)
    assert e.path == "materialized"


def test_window_reads_only_the_window() -> None:
    full = _decode(batch=64, seq_len_kv=65536)
    windowed = _decode(batch=64, seq_len_kv=65536, window=4096)
    short = _decode(batch=64, seq_len_kv=4096)
    assert windowed == pytest.approx(short, rel=1e-9)
    assert windowed < full / 8


def test_gqa_reads_k_v_once_per_kv_head() -> None:
    mha = explain_attention(batch=64, seq_len=1, seq_len_kv=16384, heads=32, kv_heads=32,
                            head_dim=128, gpu="h100")
    gqa = explain_attention(batch=64, seq_len=1, seq_len_kv=16384, heads=32, kv_heads=4,
                            head_dim=128, gpu="h100")
    assert mha.time_s / gqa.time_s == pytest.approx(8, rel=0.15)


def test_other_gpus_use_the_prior_with_their_own_bandwidth() -> None:
    p, origin = decode_params(sw.get_gpu("b200"))
    assert "prior" in origin
    assert p.sm_stream_share == DECODE_PRIOR["sm_stream_share"]
    h100 = _decode("h100", batch=128, seq_len_kv=32768, dtype="bf16")
    a100 = _decode("a100", batch=128, seq_len_kv=32768)
    assert h100 < a100  # 3.35 against 2.04 TB/s


def test_price_and_estimate_route_through_it() -> None:
    from shapewise.cost.price import price
    from shapewise.ops import Attention

    op = Attention(batch=4, heads=32, kv_heads=4, seq_len=1, seq_len_kv=8192, head_dim=128,
                   causal=True)
    assert price(op, "a100") == pytest.approx(
        _decode(batch=4, seq_len_kv=8192, dtype="bf16"), rel=1e-12)


@pytest.mark.parametrize("field,kw", [
    ("batch", {"batch": 0}), ("seq_len_kv", {"seq_len_kv": -3}),
    ("kv_heads", {"kv_heads": 5}), ("head_dim", {"head_dim": 0}),
])
def test_bad_input_names_the_field(field: str, kw: dict) -> None:
    with pytest.raises(InputError, match=field):
        _decode(**kw)


def test_bad_capacity_names_the_field() -> None:
    with pytest.raises(InputError, match="kv_capacity"):
        explain_decode(batch=1, heads=32, kv_heads=4, seq_len=1, keys=10, head_dim=128,
                       head_dim_v=128, gpu=A100, dtype="fp16", kv_capacity=0)


def test_import_stays_torch_free() -> None:
    code = ("import sys, shapewise; shapewise.attention_time(batch=1, heads=8, seq_len=1, "
            "seq_len_kv=999, head_dim=64, gpu='h100'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("bad,field", [({"hbm_fractoin": 0.8}, "hbm_fractoin"),
                                       ({"sm_stream_share": 0.0}, "sm_stream_share")])
def test_bad_profile_parameters_name_the_key(bad: dict, field: str) -> None:
    import dataclasses

    cal = dataclasses.replace(A100.calibration, attention_decode=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=f"attention_decode.{field}"):
        decode_params(A100.with_calibration(cal))


@pytest.mark.parametrize("field,kw", [("keys", {"keys": 0}), ("kv_heads", {"kv_heads": 3}),
                                      ("batch", {"batch": -1}), ("dtype", {"dtype": "fp7"})])
def test_explain_decode_checks_its_own_input(field: str, kw: dict) -> None:
    args = {"batch": 1, "heads": 32, "kv_heads": 4, "seq_len": 1, "keys": 10,
            "head_dim": 128, "head_dim_v": 128, "gpu": "a100", **kw}
    with pytest.raises(InputError, match=field):
        explain_decode(**args)
