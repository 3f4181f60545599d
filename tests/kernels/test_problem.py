"""The kernels' problems are the shared ops: one GEMM, one attention problem, one count of
their work (no torch needed)."""

from __future__ import annotations

import pytest

from shapewise.bench.plan import AttentionSpec, ElementwiseSpec, GemmSpec
from shapewise.errors import InputError
from shapewise.kernels import elementwise, gemm
from shapewise.kernels.problem import (
    AttentionProblem,
    attention_bytes,
    attention_flops,
    gemm_bytes,
    gemm_flops,
    unsupported_attention,
)
from shapewise.ops import Attention, Gemm


def test_attention_problem_is_an_ops_attention() -> None:
    p = AttentionProblem(batch=2, heads=8, kv_heads=2, seq_len=64, seq_len_kv=64, head_dim=32)
    assert isinstance(p, Attention)
    assert p.groups == 2 and not p.causal  # the kernels' default: not causal
    # the same work, counted once, whichever way the op was written
    shared = Attention(batch=2, heads=8, kv_heads=2, seq_len=64, head_dim=32, causal=False)
    assert attention_flops(shared) == p.flops() == 4 * 2 * 8 * 32 * 64 * 64
    assert attention_bytes(shared, "bf16") == p.bytes_moved("bf16")


def test_attention_problem_names_the_field_it_rejects() -> None:
    with pytest.raises(InputError, match="kv_heads"):
        AttentionProblem(batch=1, heads=6, kv_heads=4, seq_len=8, seq_len_kv=8, head_dim=8)
    with pytest.raises(InputError, match="head_dim"):
        AttentionProblem(batch=1, heads=2, kv_heads=2, seq_len=8, seq_len_kv=8, head_dim=0)


def test_what_the_kernels_do_not_build_is_said() -> None:
    assert unsupported_attention(Attention(batch=1, heads=2, seq_len=8, head_dim=8)) == ""
    assert "window" in unsupported_attention(
        Attention(batch=1, heads=2, seq_len=8, head_dim=8, window=4))
    assert "V head dim" in unsupported_attention(
        Attention(batch=1, heads=2, seq_len=8, head_dim=8, head_dim_v=4))


def test_gemm_work_is_the_ops_gemm() -> None:
    op = Gemm(m=3, n=5, k=7, batch=2, dtype="fp16")
    assert gemm_flops(op) == op.flops == gemm.flops(3, 5, 7, batch=2)
    assert gemm_bytes(op) == gemm.bytes_moved(3, 5, 7, batch=2, dtype="fp16") \
        == (3 * 7 + 7 * 5 + 3 * 5) * 2 * 2


def test_bench_specs_speak_the_shared_ops() -> None:
    g = GemmSpec(m=64, n=128, k=32, batch=3, dtype="bf16", group="spread")
    assert g.problem == Gemm(m=64, n=128, k=32, batch=3, dtype="bf16")
    assert (g.flops, g.bytes) == (gemm_flops(g.problem), gemm_bytes(g.problem))
    a = AttentionSpec(batch=2, heads=4, kv_heads=1, seq_len=100, seq_len_kv=100, head_dim=64,
                      causal=True, backward=True, backend="math", dtype="fp16")
    assert isinstance(a.problem, Attention) and a.problem.backward and a.problem.groups == 1
    assert (a.flops, a.bytes) == (attention_flops(a.problem), attention_bytes(a.problem))
    e = ElementwiseSpec(op="rmsnorm", rows=8, cols=16, dtype="bf16")
    assert (e.flops, e.bytes) == (elementwise.flops("rmsnorm", 8, 16),
                                  elementwise.bytes_moved("rmsnorm", 8, 16, dtype="bf16"))
