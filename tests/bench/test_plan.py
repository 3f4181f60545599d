"""Sweep plans: deterministic, unique keys, the groups the fit needs, sized for their budget."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest

from shapewise.bench.plan import (
    AttentionSpec,
    ElementwiseSpec,
    GemmSpec,
    Target,
    make_plan,
    spec_record,
)
from shapewise.errors import InputError

CPU = Target(device="cpu", dtype="fp32")
H100 = Target(device="gpu", dtype="bf16", sm_count=132, memory_bytes=80 * 10**9)
A100 = Target(device="gpu", dtype="bf16", sm_count=108, memory_bytes=40 * 10**9)
MI300X = Target(device="gpu", dtype="fp16", sm_count=304, memory_bytes=192 * 10**9)
ALL = [(t, mode) for t in (CPU, H100, A100, MI300X) for mode in ("tiny", "quick", "full")]


@pytest.mark.parametrize(("target", "mode"), ALL)
def test_plans_are_deterministic_with_unique_keys(target: Target, mode: str) -> None:
    a = make_plan(target, mode)
    b = make_plan(target, mode)
    assert [s.key for s in a] == [s.key for s in b]
    assert len({s.key for s in a}) == len(a)
    # run order: by priority, so a budgeted run has some of everything first
    assert [s.priority for s in a] == sorted(s.priority for s in a)
    assert all(s.dtype == target.dtype for s in a)


def test_key_format_is_stable() -> None:
    assert (GemmSpec(m=4096, n=4096, k=4096, dtype="bf16", group="ceiling").key
            == "gemm:m=4096,n=4096,k=4096,b=1,dtype=bf16")
    assert GemmSpec(m=8, n=8, k=8, batch=4, dtype="bf16", group="bmm").kind == "bmm"
    tri = GemmSpec(m=8, n=8, k=8, dtype="bf16", backend="triton", tile=(128, 128, 64),
                   group="triton")
    assert tri.key.endswith(",backend=triton,tile=128x128x64")
    att = AttentionSpec(batch=2, heads=16, kv_heads=4, seq_len=4096, seq_len_kv=4096,
                        head_dim=128, causal=True, backend="flash", dtype="bf16")
    assert att.key == ("attention:b=2,h=16,kvh=4,s=4096,skv=4096,d=128,causal=1,bwd=0,"
                       "backend=flash,dtype=bf16")
    ew = ElementwiseSpec(op="rmsnorm", rows=8, cols=4096, dtype="bf16")
    assert ew.key == "elementwise:op=rmsnorm,rows=8,cols=4096,dtype=bf16"


def test_records_carry_the_fields_the_fit_reads() -> None:
    g = spec_record(GemmSpec(m=2, n=3, k=4, dtype="bf16", group="spread"))
    assert {"key", "kind", "group", "backend", "dtype", "m", "n", "k", "batch", "flops",
            "bytes"} <= set(g)
    assert g["flops"] == 48 and g["bytes"] == (8 + 12 + 6) * 2
    a = spec_record(AttentionSpec(batch=1, heads=2, kv_heads=1, seq_len=4, seq_len_kv=4,
                                  head_dim=8, causal=True, backend="math", dtype="fp32"))
    assert {"batch", "heads", "kv_heads", "seq_len", "seq_len_kv", "head_dim", "causal",
            "backward", "backend"} <= set(a)
    assert a["flops"] == 4 * 1 * 2 * 8 * (4 * 5 // 2)
    e = spec_record(ElementwiseSpec(op="copy", rows=3, cols=5, dtype="fp16"))
    assert e["op"] == "copy" and e["numel"] == 15 and e["bytes"] == 2 * 15 * 2


@pytest.mark.parametrize("target", [H100, A100, MI300X])
def test_gpu_quick_covers_every_group(target: Target) -> None:
    groups = Counter(s.group for s in make_plan(target, "quick"))
    for group in ("ceiling", "spread", "align", "wave", "m_scan", "k_scan", "skinny", "bmm",
                  "triton", "attention", "elementwise"):
        assert groups[group] > 0, group
    assert groups["spread"] >= 50


def test_full_is_a_bigger_sweep_than_quick() -> None:
    quick = {s.key for s in make_plan(H100, "quick")}
    full = {s.key for s in make_plan(H100, "full")}
    assert len(full) > 3 * len(quick)
    assert len(quick & full) > len(quick) // 2


def test_alignment_scan_hits_each_alignment_class() -> None:
    """Around 4096 the scan has dims that are odd, 8- but not 64-aligned, 64- but not
    128-aligned, and 128-aligned, in n and in k."""
    plan = [s for s in make_plan(H100, "quick") if s.group in ("align", "ceiling")]
    for dim in ("n", "k"):
        values = {getattr(s, dim) for s in plan if isinstance(s, GemmSpec)}
        assert any(v % 2 for v in values)
        assert any(v % 8 == 0 and v % 64 for v in values)
        assert any(v % 64 == 0 and v % 128 for v in values)
        assert any(v % 128 == 0 for v in values)


@pytest.mark.parametrize("target", [H100, A100, MI300X])
def test_wave_scan_straddles_multiples_of_the_sm_count(target: Target) -> None:
    tiles = sorted(math.ceil(s.m / 128) * math.ceil(s.n / 128)
                   for s in make_plan(target, "quick") if s.group == "wave")
    for waves in (1, 2, 3):
        edge = waves * target.sm_count
        assert any(edge - 16 <= t <= edge for t in tiles), (waves, tiles)
        assert any(edge < t <= edge + 32 for t in tiles), (waves, tiles)


def test_attention_sweeps_head_dim_sequence_causal_gqa_backward() -> None:
    att = [s for s in make_plan(H100, "full") if isinstance(s, AttentionSpec)]
    assert {s.backend for s in att} == {"flash", "efficient", "cudnn", "math", "flash_attn",
                                        "triton"}
    assert {64, 80, 96, 128, 192, 256} <= {s.head_dim for s in att}
    assert {512, 1024, 2048, 4096, 8192} <= {s.seq_len for s in att}
    assert {True, False} == {s.causal for s in att}
    assert any(s.kv_heads < s.heads for s in att)
    assert any(s.backward for s in att)
    assert max(s.seq_len for s in att if s.backend == "math") <= 4096


def test_cpu_quick_fits_two_minutes_on_two_cores() -> None:
    """Every size ≤ 2048; the time estimate, at a pessimistic 30 GFLOP/s and 1 GB/s with
    each kernel timed for at most its timing budget, stays well under 2 minutes."""
    plan = make_plan(CPU, "quick")
    gemms = [s for s in plan if isinstance(s, GemmSpec)]
    assert max(max(s.m, s.n, s.k) for s in gemms) <= 2048
    max_run, per_kernel_overhead = 0.4, 0.05
    # each kernel: its timing budget, plus 5 calls (warm-up, block-size search) past it
    est = sum(max_run + per_kernel_overhead + 5 * max(s.flops / 30e9, s.bytes / 1e9)
              for s in plan)
    assert est < 100, est
    # a varied, well-spread set of GEMMs: 5 decades of FLOPs, each dim over 2 decades
    flops = sorted(s.flops for s in gemms)
    assert flops[-1] / flops[0] > 1e5
    spread = [s for s in gemms if s.group == "spread"]
    for dim in ("m", "n", "k"):
        values = [getattr(s, dim) for s in spread]
        assert max(values) / min(values) >= 50, dim
    assert sum(1 for s in spread if s.m % 8 or s.n % 8 or s.k % 8) >= 10


def test_gpu_plans_leave_out_what_cannot_fit() -> None:
    small = Target(device="gpu", dtype="bf16", sm_count=132, memory_bytes=2 * 10**9)
    plan = make_plan(small, "full")
    assert all(s.working_set <= 0.4 * small.memory_bytes for s in plan)
    assert len(plan) < len(make_plan(H100, "full"))


def test_target_validation_names_the_field() -> None:
    with pytest.raises(InputError, match="dtype"):
        Target(device="cpu", dtype="fp8")
    with pytest.raises(InputError, match="sm_count"):
        Target(device="gpu", dtype="bf16")
    with pytest.raises(InputError, match="mode"):
        make_plan(CPU, "huge")  # type: ignore[arg-type]


def test_plan_module_is_pure_python() -> None:
    code = ("import sys; from shapewise.bench.plan import make_plan, Target; "
            "make_plan(Target(device='gpu', dtype='bf16', sm_count=132), 'full'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "False"
