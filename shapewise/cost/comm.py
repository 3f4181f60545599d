"""Tensor-parallel communication: an alpha-beta model of a ring all-reduce.

A ring all-reduce of ``nbytes`` over ``t`` GPUs sends 2·(t−1)/t · nbytes through each GPU's
link in 2·(t−1) steps, each paying a fixed latency α:

    t_allreduce = 2·(t−1)/t · nbytes / link_bandwidth + 2·(t−1) · α

``link_bandwidth`` is the GPU's scale-up bandwidth per direction from its profile (NVLink,
Infinity Fabric); parts without a scale-up link fall back to PCIe 4.0 x16.
"""

from __future__ import annotations

import math
import numbers

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, get_gpu

#: Per-step latency of a ring all-reduce, seconds. Assumption: NCCL's documented
#: small-message latency on NVLink is a few microseconds per hop; 5 us per step is used.
ALPHA_S = 5e-6
#: PCIe 4.0 x16: 16 GT/s × 16 lanes with 128b/130b coding ≈ 31.5 GB/s per direction
#: (PCI-SIG PCIe 4.0 specification); used when a GPU has no scale-up link.
PCIE4_X16_GBS = 31.5


def link_bandwidth(gpu: GPU) -> float:
    """Bytes/s per direction between tensor-parallel peers."""
    gbs = gpu.link_bandwidth_gbs if gpu.link_bandwidth_gbs > 0 else PCIE4_X16_GBS
    return gbs * 1e9


def allreduce_time(nbytes: float, *, gpu: str | GPU, tp: int, alpha_s: float = ALPHA_S) -> float:
    """Seconds for a ring all-reduce of ``nbytes`` among ``tp`` GPUs (0 when tp == 1)."""
    if isinstance(tp, bool) or not isinstance(tp, numbers.Integral) or tp < 1:
        raise InputError(f"tp: must be a positive integer, got {tp!r}")
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Real) or not math.isfinite(
            nbytes) or nbytes < 0:
        raise InputError(f"nbytes: must be a finite non-negative number, got {nbytes!r}")
    if tp == 1:
        return 0.0
    g = get_gpu(gpu)
    steps = 2 * (tp - 1)
    return steps / tp * float(nbytes) / link_bandwidth(g) + steps * alpha_s
