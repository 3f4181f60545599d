"""The torch kernels (GEMM, attention backends, memory-bound ops) against float64, on the CPU;
the same on a GPU where there is one."""

from __future__ import annotations

import itertools
import math

import pytest

torch = pytest.importorskip("torch")

from shapewise.kernels import (  # noqa: E402
    TOLERANCE,
    CheckResult,
    Unsupported,
    attention,
    elementwise,
    gemm,
    relative_error,
)
from shapewise.kernels.problem import AttentionProblem  # noqa: E402
from shapewise.kernels.timing import TimingConfig  # noqa: E402

FAST = TimingConfig(cpu_min_run_time_s=0.01, cpu_max_run_time_s=0.05, cpu_retries=0)

HAS_GPU = torch.cuda.is_available()

ODD_SHAPES = [(37, 61, 29), (1, 17, 100), (64, 64, 64), (130, 3, 257)]


# ------------------------------------------------------------------------------- helpers
def test_relative_error_fails_nan_and_measures_scale() -> None:
    ref = torch.ones(4, 4, dtype=torch.float64)
    assert relative_error(ref * (1 + 1e-3), ref) == pytest.approx(1e-3, rel=1e-9)
    poisoned = ref.clone()
    poisoned[2, 3] = float("nan")
    err = relative_error(poisoned, ref)
    assert math.isnan(err)
    assert not CheckResult(name="x", rel_error=err, tolerance=1.0).ok  # NaN never passes


def test_relative_error_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        relative_error(torch.ones(2, 3), torch.ones(3, 2))


# ---------------------------------------------------------------------------------- GEMM
@pytest.mark.parametrize(("m", "n", "k"), ODD_SHAPES)
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_gemm_matches_float64(m: int, n: int, k: int, dtype: str) -> None:
    result = gemm.check(m=m, n=n, k=k, dtype=dtype)
    assert result.ok, result


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_batched_gemm_matches_float64(dtype: str) -> None:
    result = gemm.check(m=37, n=61, k=29, batch=3, dtype=dtype)
    assert result.ok, result


def test_gemm_counts() -> None:
    assert gemm.flops(2, 3, 4) == 48
    assert gemm.flops(2, 3, 4, batch=5) == 240
    # (2·4 + 4·3 + 2·3) elements of 2 bytes
    assert gemm.bytes_moved(2, 3, 4, dtype="bf16") == 52


def test_bench_gemm_times_and_rates() -> None:
    r = gemm.bench_gemm(m=64, n=48, k=32, dtype="fp32", device="cpu", config=FAST)
    assert r.median_s > 0 and r.n_runs >= 1 and r.spread_s >= 0
    assert r.flops == 2 * 64 * 48 * 32
    assert r.tflops == pytest.approx(r.flops / r.median_s / 1e12)
    d = r.to_dict()
    assert {"median_s", "spread_s", "n_runs", "flops", "bytes", "tflops", "gbs"} <= set(d)
    # on Linux the CPU path also says how much other work competed for the cores
    assert set(d) - {"median_s", "spread_s", "n_runs", "flops", "bytes", "tflops", "gbs"} \
        <= {"cpu_contention", "attempts"}


# ----------------------------------------------------------------------------- attention
PROBLEMS = [
    AttentionProblem(batch=2, heads=4, kv_heads=4, seq_len=37, seq_len_kv=37, head_dim=16),
    AttentionProblem(batch=1, heads=4, kv_heads=2, seq_len=37, seq_len_kv=37, head_dim=24,
                     causal=True),
    AttentionProblem(batch=1, heads=2, kv_heads=1, seq_len=19, seq_len_kv=45, head_dim=64),
]


@pytest.mark.parametrize(("backend", "problem", "dtype"),
                         list(itertools.product(("math", "flash"), PROBLEMS, ("fp32", "bf16"))))
def test_attention_cpu_backends_match_float64(backend: str, problem: AttentionProblem,
                                              dtype: str) -> None:
    result = attention.check(backend, problem, dtype=dtype)
    assert result.supported, result
    assert result.ok, result


@pytest.mark.parametrize("backend", ["efficient", "cudnn", "flash_attn", "triton"])
def test_gpu_only_backends_report_unsupported_on_cpu(backend: str) -> None:
    result = attention.check(backend, PROBLEMS[0], dtype="fp32")
    assert not result.supported and result.reason
    with pytest.raises(Unsupported):
        attention.bench_attention(backend=backend, problem=PROBLEMS[0], dtype="fp32",
                                  device="cpu")


def test_reference_causal_masks_future_keys() -> None:
    q = torch.randn(1, 1, 5, 8)
    k = torch.randn(1, 1, 5, 8)
    v = torch.randn(1, 1, 5, 8)
    out = attention.reference(q, k, v, causal=True)
    # the first query sees only the first key
    assert torch.allclose(out[0, 0, 0], v[0, 0, 0].double())


@pytest.mark.parametrize(("s", "skv", "causal"),
                         [(7, 7, False), (7, 7, True), (5, 9, True), (9, 5, True)])
def test_attention_flops_count_unmasked_pairs(s: int, skv: int, causal: bool) -> None:
    p = AttentionProblem(batch=2, heads=3, kv_heads=1, seq_len=s, seq_len_kv=skv, head_dim=8,
                         causal=causal)
    pairs = sum(1 for i in range(s) for j in range(skv) if not causal or j <= i)
    assert p.score_pairs == pairs
    assert p.flops() == 4 * 2 * 3 * 8 * pairs
    bwd = AttentionProblem(batch=2, heads=3, kv_heads=1, seq_len=s, seq_len_kv=skv,
                           head_dim=8, causal=causal, backward=True)
    assert bwd.flops() == p.flops() * 5 // 2


def test_attention_problem_validates() -> None:
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        AttentionProblem(batch=1, heads=6, kv_heads=4, seq_len=8, seq_len_kv=8, head_dim=8)
    with pytest.raises(ValueError, match="seq_len"):
        AttentionProblem(batch=1, heads=1, kv_heads=1, seq_len=0, seq_len_kv=8, head_dim=8)


@pytest.mark.parametrize("backward", [False, True])
def test_bench_attention_forward_and_backward(backward: bool) -> None:
    p = AttentionProblem(batch=1, heads=2, kv_heads=1, seq_len=64, seq_len_kv=64, head_dim=16,
                         causal=True, backward=backward)
    r = attention.bench_attention(backend="math", problem=p, dtype="fp32", device="cpu",
                                  config=FAST)
    assert r.median_s > 0 and r.flops == p.flops()


# ---------------------------------------------------------------------------- elementwise
@pytest.mark.parametrize(("op", "dtype"),
                         list(itertools.product(elementwise.OPS, ("fp32", "fp16", "bf16"))))
def test_elementwise_matches_float64(op: str, dtype: str) -> None:
    result = elementwise.check(op, rows=37, cols=61, dtype=dtype)
    assert result.ok, result


def test_elementwise_rejects_unknown_op() -> None:
    with pytest.raises(ValueError, match="op"):
        elementwise.check("tanhshrink", rows=2, cols=2)


def test_bench_elementwise_counts_bytes() -> None:
    r = elementwise.bench_elementwise(op="rmsnorm", rows=64, cols=128, dtype="fp32",
                                      device="cpu", config=FAST)
    assert r.bytes == (2 * 64 * 128 + 128) * 4
    assert r.gbs == pytest.approx(r.bytes / r.median_s / 1e9)


def test_tolerances_are_ordered_by_precision() -> None:
    assert TOLERANCE["fp32"] < TOLERANCE["tf32"] <= TOLERANCE["fp16"] < TOLERANCE["bf16"]


# ------------------------------------------------------------------------------- on a GPU
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize(("m", "n", "k"), ODD_SHAPES)
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA or ROCm GPU")
def test_gemm_on_gpu(m: int, n: int, k: int, dtype: str) -> None:
    result = gemm.check(m=m, n=n, k=k, dtype=dtype, device="cuda")
    assert result.ok, result


@pytest.mark.parametrize("backend", list(attention.BACKENDS))
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA or ROCm GPU")
def test_attention_backends_on_gpu(backend: str, dtype: str) -> None:
    for problem in (*PROBLEMS,
                    AttentionProblem(batch=2, heads=8, kv_heads=2, seq_len=256, seq_len_kv=256,
                                     head_dim=128, causal=True)):
        result = attention.check(backend, problem, dtype=dtype, device="cuda")
        assert result.ok, result  # an unsupported backend passes vacuously (and says why)


@pytest.mark.parametrize("op", list(elementwise.OPS))
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA or ROCm GPU")
def test_elementwise_on_gpu(op: str) -> None:
    result = elementwise.check(op, rows=37, cols=61, dtype="bf16", device="cuda")
    assert result.ok, result
