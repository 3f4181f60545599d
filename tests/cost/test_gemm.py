"""GEMM cost model: known shape effects, physical floor, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shapewise as sw
from shapewise.cost.defaults import calibration_of
from shapewise.cost.fit import predict_gemm_times
from shapewise.cost.gemm import physical_floor
from shapewise.errors import InputError

GPUS = [g.id for g in sw.list_gpus()]


def tflops(m: int, n: int, k: int, gpu: str, dtype: str = "bf16", batch: int = 1) -> float:
    return 2.0 * batch * m * n * k / sw.gemm_time(m, n, k, gpu=gpu, dtype=dtype, batch=batch) / 1e12


def test_padded_vocab_logits_faster_despite_more_flops_a100() -> None:
    # nanoGPT's 50257 -> 50304: more FLOPs, less time (n misaligned: no 16-byte loads)
    t_odd = sw.gemm_time(4096, 50257, 2048, gpu="a100", dtype="bf16")
    t_pad = sw.gemm_time(4096, 50304, 2048, gpu="a100", dtype="bf16")
    assert t_pad < t_odd
    ex = sw.explain_gemm(4096, 50257, 2048, gpu="a100")
    assert ex.suggestions and ex.suggestions[0].dim == "n"
    assert ex.suggestions[0].to % 64 == 0 and ex.suggestions[0].speedup > 1.05


def test_ffn_k_10944_clearly_faster_per_flop_than_10922_h100() -> None:
    # co-design.md rule 6, measured in public: 398.4 vs 272.7 TFLOP/s (batched, b=4)
    fast = tflops(4096, 4096, 10944, "h100", "fp16", batch=4)
    slow = tflops(4096, 4096, 10922, "h100", "fp16", batch=4)
    assert fast > 1.2 * slow


@pytest.mark.parametrize("gpu", ["a100", "h100"])
def test_large_square_lands_between_70_and_90_percent_of_peak(gpu: str) -> None:
    ex = sw.explain_gemm(8192, 8192, 8192, gpu=gpu, dtype="bf16")
    assert 70.0 <= ex.pct_of_peak <= 90.0
    assert ex.bound == "compute"


def test_wave_quantization_sawtooth_in_n() -> None:
    # N sweep at fixed M, K: throughput rises within each wave and drops when a new wave
    # starts; many drops, each a real local maximum followed by a fall
    gpu = sw.get_gpu("a100")
    ns = list(range(1024, 16385, 64))
    rates = [tflops(4096, n, 4096, gpu) for n in ns]
    drops = sum(1 for a, b in itertools.pairwise(rates) if b < a * 0.97)
    assert drops >= 10
    # one whole wave (108 tiles of 256x128 at M=4096 -> 16 rows of tiles) beats one tile more
    whole = tflops(4096, 128 * 27, 4096, gpu)  # 16 x 27 = 432 tiles = 4 waves
    over = tflops(4096, 128 * 27 + 64, 4096, gpu)
    assert whole > over


def test_explanation_fields_consistent() -> None:
    ex = sw.explain_gemm(2048, 8192, 4096, gpu="h100")
    assert ex.time_s == pytest.approx(sw.gemm_time(2048, 8192, 4096, gpu="h100"))
    assert ex.waves == math.ceil(ex.tiles / ex.slots)
    assert 0 < ex.last_wave_fill <= 1 and 0 < ex.tile_fill <= 1
    assert ex.tflops == pytest.approx(ex.flops / ex.time_s / 1e12)
    assert "GEMM 2048x8192x4096" in str(ex)
    assert ex.to_dict()["tile"] == ex.tile


@settings(max_examples=2000, deadline=None)
@given(
    m=st.integers(1, 70000), n=st.integers(1, 70000), k=st.integers(1, 70000),
    batch=st.integers(1, 64), gpu=st.sampled_from(GPUS),
    dtype=st.sampled_from(["bf16", "fp16", "tf32", "fp32", "fp8", "fp64", "int8"]),
)
def test_every_prediction_finite_positive_above_physical_floor(
        m: int, n: int, k: int, batch: int, gpu: str, dtype: str) -> None:
    g = sw.get_gpu(gpu)
    if dtype not in g.peak_tflops:
        with pytest.raises(InputError, match="dtype"):
            sw.gemm_time(m, n, k, gpu=g, dtype=dtype, batch=batch)
        return
    t = sw.gemm_time(m, n, k, gpu=g, dtype=dtype, batch=batch)
    assert math.isfinite(t) and t > 0
    assert t >= physical_floor(m, n, k, gpu=g, dtype=dtype, batch=batch)
    flops = 2.0 * batch * m * n * k
    assert t >= flops / g.peak_flops(dtype)


@settings(max_examples=300, deadline=None)
@given(m=st.integers(1, 20000), n=st.integers(1, 20000), k=st.integers(1, 20000),
       batch=st.integers(1, 8), gpu=st.sampled_from(["h100", "a100", "mi300x", "b200", "v100"]))
def test_vectorised_fit_model_matches_scalar_model(m: int, n: int, k: int, batch: int,
                                                   gpu: str) -> None:
    g = sw.get_gpu(gpu)
    dtype = "fp16"
    vec = predict_gemm_times(g, calibration_of(g), dtype, np.array([m], float),
                             np.array([n], float), np.array([k], float),
                             np.array([batch], float))[0]
    assert vec == pytest.approx(sw.gemm_time(m, n, k, gpu=g, dtype=dtype, batch=batch),
                                rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"m": 0, "n": 8, "k": 8}, "m"),
        ({"m": 8, "n": -1, "k": 8}, "n"),
        ({"m": 8, "n": 8, "k": 2.5}, "k"),
        ({"m": 8, "n": 8, "k": True}, "k"),
        ({"m": "8", "n": 8, "k": 8}, "m"),
        ({"m": 8, "n": 8, "k": 8, "batch": 0}, "batch"),
        ({"m": 8, "n": 8, "k": float("nan")}, "k"),
    ],
)
def test_bad_sizes_name_the_argument(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=f"^{field}:"):
        sw.gemm_time(gpu="h100", **kwargs)


def test_dtype_the_gpu_lacks_and_unknown_gpu() -> None:
    with pytest.raises(InputError, match=r"dtype.*fp8"):
        sw.gemm_time(1024, 1024, 1024, gpu="a100", dtype="fp8")
    with pytest.raises(InputError, match="dtype"):
        sw.gemm_time(1024, 1024, 1024, gpu="a100", dtype="fp12")
    with pytest.raises(InputError, match=r"gpu.*unknown GPU"):
        sw.gemm_time(1024, 1024, 1024, gpu="h1000x")
    assert isinstance(InputError("x"), ValueError)


def test_defaults_are_named_as_such() -> None:
    ex = sw.explain_gemm(1024, 1024, 1024, gpu="rtx-4090")
    assert ex.calibration == "spec-derived defaults"
    assert sw.explain_gemm(1024, 1024, 1024, gpu="h100").calibration == "fitted"
