"""A tiled Triton matmul with explicit block sizes, to measure tile quantization for a known tile.

The four parts: :func:`_matmul_kernel` (the kernel), :func:`matmul` (the launcher),
:func:`check` (against float64), :func:`bench_triton_matmul` (time + TFLOP/s).

Unlike cuBLAS, which picks its tile per shape, this kernel always cuts the (m, n) output
into ``BLOCK_M × BLOCK_N`` tiles, one program each, and walks k in ``BLOCK_K`` steps. So a
problem of ceil(m/BM)·ceil(n/BN) tiles on an S-SM GPU takes ceil(tiles / S) waves (one
program per SM assumed), and an m one past a multiple of BM costs a whole extra row of
tiles: tile and wave quantization with the tile known, not guessed.

Odd shapes are handled by masks on every load and store (37 × 61 × 29 works); programs are
ordered in groups of ``GROUP_M`` tile rows so that neighbours share operands in L2 (as in
the Triton tutorial). Accumulation is fp32; the output has the inputs' dtype.

Importing this module imports triton and defines the kernel, so set ``TRITON_INTERPRET=1``
before importing it to run on the CPU (the interpreter is exact in fp32 and fp16; its bf16
``tl.dot`` is wrong, so test bf16 on a GPU only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import triton
import triton.language as tl

from . import TOLERANCE, BenchResult, CheckResult, relative_error, torch_dtype
from .gemm import bytes_moved, flops
from .timing import TimingConfig, is_gpu, time_fn

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: the default tile: (BLOCK_M, BLOCK_N, BLOCK_K), warps, pipeline stages. 128×128×64 with
#: 8 warps is a common Hopper/Ampere bf16 choice; benches name their tile explicitly.
DEFAULT_TILE = (128, 128, 64)
DEFAULT_WARPS = 8
DEFAULT_STAGES = 3
GROUP_M = 8


@triton.jit
def _matmul_kernel(
    a_ptr, b_ptr, c_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_SIZE_M: tl.constexpr,
):
    # program id -> (tile row, tile col), grouped so GROUP_SIZE_M tile rows run together
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_SIZE_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_SIZE_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_SIZE_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
    offs_k = tl.arange(0, BLOCK_K)  # (BK,)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak  # (BM, BK)
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn  # (BK, BN)
    mask_m = offs_m[:, None] < M
    mask_n = offs_n[None, :] < N

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_left = K - k0
        a = tl.load(a_ptrs, mask=mask_m & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & mask_n, other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c = acc.to(c_ptr.dtype.element_ty)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, c, mask=mask_m & mask_n)


def tiles(m: int, n: int, block_m: int, block_n: int) -> int:
    """Programs (output tiles) the launcher starts: ceil(m/BM)·ceil(n/BN)."""
    return triton.cdiv(m, block_m) * triton.cdiv(n, block_n)


def matmul(a: torch.Tensor, b: torch.Tensor, *, block_m: int = DEFAULT_TILE[0],
           block_n: int = DEFAULT_TILE[1], block_k: int = DEFAULT_TILE[2],
           num_warps: int = DEFAULT_WARPS, num_stages: int = DEFAULT_STAGES,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """Launcher: ``a`` (m, k) @ ``b`` (k, n) with the given tile. Block sizes are powers of
    two, at least 16 (``tl.dot``'s smallest)."""
    import torch

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: need (m, k) @ (k, n), got {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"matmul: operand dtypes differ ({a.dtype} vs {b.dtype})")
    for name, v in (("block_m", block_m), ("block_n", block_n), ("block_k", block_k)):
        if v < 16 or v & (v - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {v}")
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = torch.empty((m, n), dtype=a.dtype, device=a.device)
    grid = (tiles(m, n, block_m, block_n),)
    _matmul_kernel[grid](
        a, b, out, m, n, k,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_SIZE_M=GROUP_M,
        num_warps=num_warps, num_stages=num_stages,
    )
    return out


def check(*, m: int, n: int, k: int, dtype: str = "fp32", device: str = "cpu",
          block: tuple[int, int, int] = (32, 32, 16), num_warps: int = 4) -> CheckResult:
    """Compare one launch with a float64 product, the output poisoned with NaN first so an
    unwritten element fails. On a GPU, fp32 is checked at the TF32 tolerance (Triton's
    default precision for a float32 ``tl.dot``)."""
    import torch

    t = torch_dtype(dtype)
    a = torch.randn(m, k, dtype=t, device=device)
    b = torch.randn(k, n, dtype=t, device=device)
    out = torch.full((m, n), float("nan"), dtype=t, device=device)
    matmul(a, b, block_m=block[0], block_n=block[1], block_k=block[2], num_warps=num_warps,
           out=out)
    ref = a.cpu().double() @ b.cpu().double()
    tol = TOLERANCE["tf32" if dtype == "fp32" and is_gpu(device) else dtype]
    bm, bn, bk = block
    return CheckResult(name=f"triton matmul m={m} n={n} k={k} tile={bm}x{bn}x{bk} {dtype} {device}",
                       rel_error=relative_error(out, ref), tolerance=tol)


def bench_triton_matmul(*, m: int, n: int, k: int, dtype: str, device: str,
                        block: tuple[int, int, int] = DEFAULT_TILE,
                        num_warps: int = DEFAULT_WARPS, num_stages: int = DEFAULT_STAGES,
                        config: TimingConfig | None = None) -> BenchResult:
    """Time one tiled matmul with fresh random inputs; FLOPs counted for the real (m, n, k),
    so the padding of partial tiles shows as lost throughput."""
    import torch

    t = torch_dtype(dtype)
    a = torch.randn(m, k, dtype=t, device=device)
    b = torch.randn(k, n, dtype=t, device=device)
    out = torch.empty((m, n), dtype=t, device=device)

    def refresh() -> None:
        a.normal_()
        b.normal_()

    def call() -> torch.Tensor:
        return matmul(a, b, block_m=block[0], block_n=block[1], block_k=block[2],
                      num_warps=num_warps, num_stages=num_stages, out=out)

    timing = time_fn(call, device=device, refresh=refresh, config=config)
    return BenchResult.from_timing(timing, flops=flops(m, n, k),
                                   bytes=bytes_moved(m, n, k, dtype=dtype))
