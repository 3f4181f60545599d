"""The Triton kernels against float64: on the CPU through the Triton interpreter
(``TRITON_INTERPRET=1``, in a subprocess, because ``@triton.jit`` reads the variable when a
kernel is defined), on odd shapes, in fp32 and fp16 (the interpreter's bf16 ``tl.dot`` is
wrong); and on a GPU, compiled, bf16 included."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
# found, not imported: this process must not define the kernels without the interpreter
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="needs triton")

HAS_GPU = torch.cuda.is_available()

MATMUL_CASES = [
    # (m, n, k, (BLOCK_M, BLOCK_N, BLOCK_K))
    (37, 61, 29, (32, 32, 16)),
    (37, 61, 29, (16, 64, 32)),
    (1, 17, 100, (16, 16, 16)),
    (64, 64, 64, (32, 32, 32)),
    (130, 33, 70, (64, 32, 16)),
]
ATTENTION_CASES = [
    # (batch, heads, kv_heads, seq_len, seq_len_kv, head_dim, causal, (BLOCK_M, BLOCK_N))
    (2, 4, 2, 37, 37, 24, False, (16, 16)),
    (2, 4, 2, 37, 37, 24, True, (16, 16)),
    (1, 2, 2, 19, 45, 64, False, (16, 32)),
    (1, 2, 1, 45, 19, 16, True, (32, 16)),
    (1, 2, 2, 33, 33, 80, True, (16, 16)),  # head dim padded to 128
]
DTYPES = ["fp32", "fp16"]

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.manual_seed(0)
    from shapewise.kernels import attention, triton_matmul
    from shapewise.kernels.problem import AttentionProblem
    cases = json.loads(sys.argv[1])
    for dtype in cases["dtypes"]:
        for m, n, k, block in cases["matmul"]:
            r = triton_matmul.check(m=m, n=n, k=k, dtype=dtype, block=tuple(block))
            print(json.dumps({"id": ["matmul", m, n, k, block, dtype], "err": r.rel_error,
                              "tol": r.tolerance, "ok": r.ok, "text": str(r)}))
        for b, h, kvh, s, skv, d, causal, (bm, bn) in cases["attention"]:
            p = AttentionProblem(batch=b, heads=h, kv_heads=kvh, seq_len=s, seq_len_kv=skv,
                                 head_dim=d, causal=causal)
            r = attention.check_triton_blocks(p, block_m=bm, block_n=bn, dtype=dtype)
            print(json.dumps({"id": ["attention", b, h, kvh, s, skv, d, causal, [bm, bn], dtype],
                              "err": r.rel_error, "tol": r.tolerance, "ok": r.ok,
                              "text": str(r)}))
    """
)


@pytest.fixture(scope="module")
def interpreted() -> dict[str, dict]:
    """Every case, run once in one interpreter subprocess; results keyed by case id."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cases = {"dtypes": DTYPES, "matmul": MATMUL_CASES, "attention": ATTENTION_CASES}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(cases)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {}
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        results[json.dumps(rec["id"])] = rec
    return results


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "n", "k", "block"), MATMUL_CASES)
def test_triton_matmul_interpreted(interpreted: dict, m: int, n: int, k: int, block: tuple,
                                   dtype: str) -> None:
    rec = interpreted[json.dumps(["matmul", m, n, k, list(block), dtype])]
    assert rec["ok"], rec["text"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_triton_attention_interpreted(interpreted: dict, case: tuple, dtype: str) -> None:
    b, h, kvh, s, skv, d, causal, (bm, bn) = case
    rec = interpreted[json.dumps(["attention", b, h, kvh, s, skv, d, causal, [bm, bn], dtype])]
    assert rec["ok"], rec["text"]


def test_importing_kernels_does_not_import_triton_or_torch() -> None:
    code = ("import sys, shapewise, shapewise.kernels, shapewise.kernels.gemm, "
            "shapewise.kernels.attention, shapewise.kernels.elementwise, "
            "shapewise.kernels.timing, shapewise.bench.plan, shapewise.bench.store; "
            "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA or ROCm GPU")
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_triton_kernels_on_gpu(dtype: str) -> None:
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 is set: these kernels would be interpreted")
    from shapewise.kernels import attention, triton_matmul
    from shapewise.kernels.problem import AttentionProblem

    for m, n, k, block in [*MATMUL_CASES, (1000, 3000, 515, (128, 128, 64))]:
        r = triton_matmul.check(m=m, n=n, k=k, dtype=dtype, device="cuda", block=block)
        assert r.ok, r
    for b, h, kvh, s, skv, d, causal, (bm, bn) in [*ATTENTION_CASES,
                                                   (2, 16, 4, 1000, 1000, 128, True, (128, 64))]:
        p = AttentionProblem(batch=b, heads=h, kv_heads=kvh, seq_len=s, seq_len_kv=skv,
                             head_dim=d, causal=causal)
        r = attention.check_triton_blocks(p, block_m=bm, block_n=bn, dtype=dtype,
                                          device="cuda")
        assert r.ok, r
