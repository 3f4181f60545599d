"""Kernels that shapewise measures, each in four parts (after the Triton tutorials).

Every kernel module here has: the call (or kernel), a thin launcher, ``check(...)``
comparing the output with a float64 reference by relative Frobenius error, and a ``bench_*``
entry that computes TFLOP/s or GB/s right next to the timing call.

=====================  ==============================================================
module                 what it holds
=====================  ==============================================================
``problem``            the problems, as the shared ops of ``shapewise.ops`` (Gemm,
                       Attention), and the FLOPs and bytes a measurement counts
``gemm``               ``torch.matmul`` (cuBLAS / hipBLASLt / CPU BLAS), batched too
``attention``          ``scaled_dot_product_attention`` per backend, ``flash_attn``,
                       and the Triton forward below (a registry of backend rows)
``elementwise``        layer norm, RMS norm, softmax, GELU, SiLU, copy
``triton_matmul``      a tiled matmul with explicit BLOCK_M/N/K (tile quantization)
``triton_attention``   a FlashAttention-style forward with explicit BLOCK_M/N (the
                       kernel and its launcher only; checked and timed by ``attention``)
``block``              a transformer block and head of a ``ModelShape`` in torch, timed
                       forward plus backward (what ``shapewise tune`` measures)
``timing``             the one place that times (device events or torch.utils.benchmark)
``selfcheck``          ``python -m shapewise.kernels.selfcheck``: every kernel once
=====================  ==============================================================

The ground floor: nothing here imports ``shapewise.bench``, ``check``, ``search``, ``tune``
or ``cli`` (tests/test_architecture.py holds that). Importing this package (or ``problem``,
``gemm``, ``attention``, ``elementwise``, ``timing``) never imports torch: it is imported
inside the functions that need it. ``block`` imports torch, and the two Triton modules
import triton, when they are imported (``@triton.jit`` reads ``TRITON_INTERPRET`` when a
kernel is defined), so import them only to run them, with ``TRITON_INTERPRET=1`` set first
to run the Triton kernels on the CPU.

Installed as ``shapewise.kernels`` (the folder is ``kernels/`` at the repository top;
pyproject's ``package-dir`` maps it, no symlink).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES

from .problem import score_pairs as score_pairs  # re-exported: the bench plans use it
from .timing import Timing

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: dtypes the kernels run in (the canonical names of ``shapewise.hardware.catalog``)
KERNEL_DTYPES = ("fp32", "fp16", "bf16")

#: bytes per element of each dtype a kernel runs in (the catalog's table, restricted)
ITEMSIZE = {k: DTYPE_BYTES[k] for k in ("fp64", "fp32", "tf32", "fp16", "bf16")}

#: Largest relative Frobenius error ||out - ref|| / ||ref|| that passes, against a float64
#: reference computed from the same (already rounded) inputs. What is left is accumulation
#: order and the rounding of the output: fp32 lands far under 1e-5; tf32 (Triton's default
#: for a float32 tl.dot on a GPU) near 3e-4; fp16 near 3e-4 (10-bit mantissa); bf16
#: between 1e-3 and 5e-3 (7-bit mantissa). Each bound leaves about 4x headroom.
TOLERANCE: dict[str, float] = {
    "fp64": 1e-10, "fp32": 1e-4, "tf32": 2e-3, "fp16": 2e-3, "bf16": 1.5e-2,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """Outcome of one correctness check."""

    name: str
    """what was checked, e.g. 'gemm m=37 n=61 k=29 fp16 cpu'"""
    rel_error: float
    """||out - ref||_F / ||ref||_F against float64 (NaN when the output had NaN)"""
    tolerance: float
    supported: bool = True
    """False when the backend cannot run this problem (then ``ok`` is True, vacuously)"""
    reason: str = ""

    @property
    def ok(self) -> bool:
        # written so that a NaN error fails: NaN <= x is False
        return (not self.supported) or self.rel_error <= self.tolerance

    def __str__(self) -> str:
        if not self.supported:
            return f"{self.name}: unsupported ({self.reason})"
        verdict = "ok" if self.ok else "FAIL"
        return f"{self.name}: rel err {self.rel_error:.2e} (tol {self.tolerance:.0e}) {verdict}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult(Timing):
    """One timed kernel: its timing (median, spread, runs, method, CPU contention) and the
    work one call did."""

    flops: float
    """floating-point operations of one call (multiply-add = 2)"""
    bytes: float
    """fewest bytes one call must move through memory (each input read once, output written once)"""

    @classmethod
    def from_timing(cls, timing: Timing, *, flops: float, bytes: float) -> BenchResult:
        """A result from a ``timing.Timing`` and the work of one call."""
        return cls(**{f.name: getattr(timing, f.name) for f in dataclasses.fields(Timing)},
                   flops=flops, bytes=bytes)

    @property
    def tflops(self) -> float:
        """TFLOP/s achieved (0 when the kernel does no arithmetic)."""
        return self.flops / self.median_s / 1e12 if self.median_s > 0 else 0.0

    @property
    def gbs(self) -> float:
        """GB/s achieved (1 GB = 1e9 bytes)."""
        return self.bytes / self.median_s / 1e9 if self.median_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields a measurement record carries (the method goes in the provenance)."""
        out: dict[str, Any] = {
            "median_s": self.median_s,
            "spread_s": self.spread_s,
            "n_runs": self.n_runs,
            "flops": self.flops,
            "bytes": self.bytes,
            "tflops": round(self.tflops, 6),
            "gbs": round(self.gbs, 6),
        }
        if self.contention is not None:
            out["cpu_contention"] = round(self.contention, 3)
            out["attempts"] = self.attempts
        return out


class Unsupported(RuntimeError):
    """This kernel or backend cannot run this problem here; the message says why."""


def torch_dtype(name: str) -> torch.dtype:
    """'bf16' -> torch.bfloat16 (the canonical names of the catalog)."""
    import torch

    table = {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32,
             "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in table:
        raise InputError(f"dtype: kernels run in {', '.join(table)}, not {name!r}")
    return table[name]


@contextlib.contextmanager
def matmul_math(dtype: str) -> Iterator[None]:
    """float32 matmuls use TF32 tensor cores inside this block iff ``dtype`` is "tf32"."""
    import torch

    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref||_F / ||ref||_F in float64 on the CPU; NaN if ``out`` has NaN or Inf."""
    import torch

    o = out.detach().to("cpu", torch.float64)
    r = ref.detach().to("cpu", torch.float64)
    if o.shape != r.shape:
        raise ValueError(f"shape mismatch: output {tuple(o.shape)} vs reference {tuple(r.shape)}")
    if not bool(torch.isfinite(o).all()):
        return math.nan  # a NaN left from the poisoned output means an unwritten element
    denom = float(torch.linalg.vector_norm(r))
    num = float(torch.linalg.vector_norm(o - r))
    return num / denom if denom > 0 else num


def is_device_failure(exc: BaseException) -> bool:
    """True for an error that leaves the GPU context unusable (an illegal memory access, a
    device-side assert, a launch failure): every later kernel would fail too, so a sweep
    must stop rather than record them one by one. Out-of-memory is not one of them."""
    if is_out_of_memory(exc) or not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    if any(lib in text for lib in _LIBRARY_STATUS):
        return False  # a BLAS/DNN library refused the call: the context is fine
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    accel = getattr(torch, "AcceleratorError", None)
    return (accel is not None and isinstance(exc, accel)) or any(
        marker in text for marker in _STICKY_ERRORS)


#: library status codes that torch reports as "CUDA error: ..." but that do not break the
#: context (an unsupported configuration, not a crashed kernel)
_LIBRARY_STATUS = ("CUBLAS_STATUS", "CUDNN_STATUS", "HIPBLAS_STATUS", "ROCBLAS_STATUS",
                   "MIOPEN_STATUS", "CUBLASLT", "hipblasLt")
#: the CUDA/HIP runtime's errors after which the context is unusable
_STICKY_ERRORS = ("illegal memory access", "misaligned address", "illegal instruction",
                  "unspecified launch failure", "device-side assert", "launch timed out",
                  "hardware exception", "cudaErrorLaunchFailure", "hipErrorLaunchFailure",
                  "hipErrorIllegalAddress", "uncorrectable ECC")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device or host out-of-memory error (recorded and skipped, not fatal)."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom_type):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
        or "hiperroroutofmemory" in text
    )
