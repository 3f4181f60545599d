"""GEMM and batched GEMM through ``torch.matmul``: cuBLAS(Lt), hipBLASLt or the CPU BLAS.

The four parts: :func:`gemm` (the call), :func:`launch` (allocates and runs one problem),
:func:`check` (against float64), :func:`bench_gemm` (time + TFLOP/s).

Shapes: ``a`` is (m, k), ``b`` is (k, n), the output (m, n), all row-major; a batched GEMM
adds a leading ``batch`` dimension to all three (``torch.bmm``), as the attention score and
value products of a transformer do. torch's defaults are kept: fp32 runs in full fp32 (no
TF32) unless the caller enables it. The problem is a :class:`shapewise.ops.Gemm`, its work
counted in :mod:`shapewise.kernels.problem`; these functions take its sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import (
    TOLERANCE,
    BenchResult,
    CheckResult,
    matmul_math,
    relative_error,
    torch_dtype,
)
from .problem import Gemm, gemm_bytes, gemm_flops
from .timing import TimingConfig, time_fn

if TYPE_CHECKING:  # pragma: no cover
    import torch


def flops(m: int, n: int, k: int, batch: int = 1) -> int:
    """2·m·n·k per product, times the batch (:func:`~shapewise.kernels.problem.gemm_flops`)."""
    return gemm_flops(Gemm(m=m, n=n, k=k, batch=batch))


def bytes_moved(m: int, n: int, k: int, batch: int = 1, *, dtype: str = "bf16") -> int:
    """Each operand read once and the output written once (:func:`~.problem.gemm_bytes`)."""
    return gemm_bytes(Gemm(m=m, n=n, k=k, batch=batch, dtype=dtype))


def gemm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The call: ``a @ b`` (2-D, or 3-D batched), into ``out`` when given."""
    import torch

    return torch.matmul(a, b, out=out)


def make_inputs(m: int, n: int, k: int, *, batch: int = 1, dtype: str, device: str,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh standard-normal operands (never zeros: they can run faster than real data)."""
    import torch

    lead = (batch,) if batch > 1 else ()
    t = torch_dtype(dtype)
    return (torch.randn(*lead, m, k, dtype=t, device=device),
            torch.randn(*lead, k, n, dtype=t, device=device))


def launch(m: int, n: int, k: int, *, batch: int = 1, dtype: str = "fp32",
           device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launcher: random inputs, an output poisoned with NaN, one call. Returns (a, b, out)."""
    import torch

    a, b = make_inputs(m, n, k, batch=batch, dtype=dtype, device=device)
    lead = (batch,) if batch > 1 else ()
    out = torch.full((*lead, m, n), float("nan"), dtype=torch_dtype(dtype), device=device)
    with matmul_math(dtype):  # tf32: TF32 tensor cores, as bench_gemm times it
        gemm(a, b, out=out)
    return a, b, out


def check(*, m: int, n: int, k: int, batch: int = 1, dtype: str = "fp32",
          device: str = "cpu") -> CheckResult:
    """Compare one GEMM with a float64 product of the same inputs.

    >>> check(m=37, n=61, k=29).ok
    True
    """
    import torch

    a, b, out = launch(m, n, k, batch=batch, dtype=dtype, device=device)
    ref = torch.matmul(a.cpu().double(), b.cpu().double())
    name = f"gemm m={m} n={n} k={k} batch={batch} {dtype} {device}"
    return CheckResult(name=name, rel_error=relative_error(out, ref), tolerance=TOLERANCE[dtype])


def bench_gemm(*, m: int, n: int, k: int, batch: int = 1, dtype: str, device: str,
               config: TimingConfig | None = None) -> BenchResult:
    """Time ``a @ b`` with fresh random inputs; FLOPs and bytes counted beside it."""
    import torch

    a, b = make_inputs(m, n, k, batch=batch, dtype=dtype, device=device)
    lead = (batch,) if batch > 1 else ()
    out = torch.empty((*lead, m, n), dtype=torch_dtype(dtype), device=device)

    def refresh() -> None:
        a.normal_()
        b.normal_()

    with matmul_math(dtype):
        timing = time_fn(lambda: torch.matmul(a, b, out=out), device=device, refresh=refresh,
                         config=config)
    return BenchResult.from_timing(timing, flops=flops(m, n, k, batch),
                                   bytes=bytes_moved(m, n, k, batch, dtype=dtype))
