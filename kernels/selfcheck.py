"""Correct first: check the kernels a sweep will time on this device, before timing them.

    python -m shapewise.kernels.selfcheck [--device cuda:0]

Runs each kernel once at small, odd sizes against a float64 reference (the output poisoned
with NaN first, so an element left unwritten fails) and prints one line per check. On a GPU
it also proves that the tf32 sweep really runs on TF32 tensor cores: a float32 GEMM with
TF32 allowed must differ from float64 by more than FP32 rounding would (and less than the
TF32 tolerance). Exit code 0 when every check passes, 1 otherwise: ``scripts/gpu_profile.sh``
stops before measuring anything on a device whose kernels compute wrong results.

On the CPU it checks the torch kernels only (the Triton kernels need a GPU, or the
interpreter, which the tests use).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import CheckResult, attention, gemm
from .problem import AttentionProblem
from .timing import gpu_available, is_gpu, parse_device

#: a float32 GEMM on TF32 tensor cores (10-bit mantissa) errs by ~1e-4 relative at K=512;
#: full FP32 by ~1e-7. Above this, TF32 was used.
TF32_MIN_ERROR = 1e-5


def checks(device: str) -> list[tuple[str, Callable[[], CheckResult]]]:
    """(name, check) of everything the sweeps on ``device`` time."""
    gpu = is_gpu(device)
    out: list[tuple[str, Callable[[], CheckResult]]] = []
    dtypes = (("bf16", "fp16", "tf32") if has_tf32(device) else ("bf16", "fp16")) if gpu \
        else ("fp32",)
    for dt in dtypes:
        out.append((f"gemm {dt}", lambda dt=dt: gemm.check(m=333, n=517, k=259, dtype=dt,
                                                            device=device)))
        out.append((f"batched gemm {dt}", lambda dt=dt: gemm.check(
            m=129, n=65, k=96, batch=3, dtype=dt, device=device)))
    problems = [AttentionProblem(batch=2, heads=4, kv_heads=2, seq_len=257, seq_len_kv=257,
                                 head_dim=64, causal=True),
                AttentionProblem(batch=1, heads=2, kv_heads=2, seq_len=190, seq_len_kv=190,
                                 head_dim=128, causal=False)]
    backends = ("flash", "efficient", "cudnn", "math") if gpu else ("math",)
    for p in problems:
        for be in backends:
            dt = "bf16" if gpu else "fp32"
            out.append((f"attention[{be}] d={p.head_dim} causal={p.causal} {dt}",
                        lambda be=be, p=p, dt=dt: attention.check(be, p, dtype=dt,
                                                                  device=device)))
    if gpu:
        try:
            from . import triton_attention, triton_matmul  # noqa: F401 (importable?)
        except ImportError as exc:  # no triton here: the sweep records those as unsupported
            why = f"triton is not importable ({exc})"
            out += [(name, lambda name=name: CheckResult(name=name, rel_error=float("nan"),
                                                         tolerance=0.0, supported=False,
                                                         reason=why))
                    for name in ("triton matmul bf16", "triton attention bf16")]
            return out
        out.append(("triton matmul bf16", lambda: triton_matmul.check(
            m=300, n=260, k=200, dtype="bf16", device=device, block=(64, 64, 32))))
        p = problems[0]
        out.append(("triton attention bf16", lambda: attention.check_triton_blocks(
            p, block_m=64, block_n=64, dtype="bf16", device=device)))
    return out


def has_tf32(device: str) -> bool:
    """TF32 tensor cores: NVIDIA compute capability 8.0 and later (not ROCm's torch)."""
    import torch

    if not is_gpu(device) or torch.version.hip is not None:
        return False
    return torch.cuda.get_device_capability(torch.device(device))[0] >= 8


def tf32_is_used(device: str) -> CheckResult:
    """The tf32 GEMM errs more than FP32 would: TF32 tensor cores really ran."""
    r = gemm.check(m=512, n=512, k=512, dtype="tf32", device=device)
    used = r.rel_error > TF32_MIN_ERROR
    return CheckResult(name=f"tf32 really used (error {r.rel_error:.1e} > {TF32_MIN_ERROR:g})",
                       rel_error=r.rel_error if used else float("nan"),
                       tolerance=r.tolerance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU "
                    "if there is one)")
    args = ap.parse_args(argv)
    device = parse_device(args.device) if args.device else (
        "cuda:0" if gpu_available() else "cpu")
    todo = checks(device)
    if has_tf32(device):
        todo.append(("tf32 really used", lambda: tf32_is_used(device)))
    elif is_gpu(device):
        print(f"skip  tf32: no TF32 tensor cores on {device} (the tf32 sweep is not run)")
    failed = 0
    for name, run in todo:
        try:
            r = run()
        except Exception as exc:  # a crash is a failed check, with its reason
            failed += 1
            print(f"FAIL  {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        if not r.supported:
            print(f"skip  {name}: {r.reason}")
        elif r.ok:
            print(f"ok    {name}: rel error {r.rel_error:.2e} (tolerance {r.tolerance:g})")
        else:
            failed += 1
            print(f"FAIL  {name}: rel error {r.rel_error:.2e} (tolerance {r.tolerance:g})")
    print(f"selfcheck on {device}: {len(todo) - failed} of {len(todo)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
