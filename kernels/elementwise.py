"""Memory-bound ops of a transformer layer: norms, softmax, activations, and a plain copy.

The four parts: :func:`apply` (the call), :func:`launch`, :func:`check` (against float64),
:func:`bench_elementwise` (time + GB/s).

Every op maps an input ``x`` of shape (rows, cols) to an output of the same shape, reducing
over ``cols`` where it reduces (the hidden size for norms, the key length for softmax). Its
bytes are one read of ``x`` and one write of the output (the norm weights, ``cols``
elements, are counted too); ``copy`` is the bandwidth ceiling the others are compared with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import ITEMSIZE, TOLERANCE, BenchResult, CheckResult, relative_error, torch_dtype
from .timing import TimingConfig, time_fn

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: the ops, with the floating-point operations per element each does (approximate: the
#: cost model prices these by bytes; FLOPs are recorded for completeness)
OPS: dict[str, int] = {
    "layernorm": 8,  # mean, centre, square, variance sum, scale, weight, bias
    "rmsnorm": 5,  # square, sum, scale, weight
    "softmax": 5,  # max, subtract, exp, sum, divide
    "gelu": 10,  # tanh approximation: x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2
    "silu": 4,  # x·sigmoid(x)
    "copy": 0,  # read and write: the bandwidth ceiling
}

_EPS = 1e-5


def _params(op: str) -> int:
    """How many weight vectors of length ``cols`` the op reads."""
    return {"layernorm": 2, "rmsnorm": 1}.get(op, 0)


def flops(op: str, rows: int, cols: int) -> int:
    return OPS[op] * rows * cols


def bytes_moved(op: str, rows: int, cols: int, *, dtype: str = "bf16") -> int:
    """One read of x, one write of the output, plus the norm weights."""
    return (2 * rows * cols + _params(op) * cols) * ITEMSIZE[dtype]


def _check_op(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"op: expected one of {', '.join(OPS)}, got {op!r}")


def make_call(op: str, x: torch.Tensor, out: torch.Tensor | None = None
              ) -> Callable[[], torch.Tensor]:
    """The call for ``op`` on ``x`` (rows, cols), as a closure (weights drawn here)."""
    import torch
    import torch.nn.functional as F

    _check_op(op)
    cols = x.shape[-1]
    w = torch.randn(cols, dtype=x.dtype, device=x.device) if _params(op) else None
    bias = torch.randn(cols, dtype=x.dtype, device=x.device) if _params(op) == 2 else None
    if op == "layernorm":
        return lambda: F.layer_norm(x, (cols,), w, bias, eps=_EPS)
    if op == "rmsnorm":
        return lambda: F.rms_norm(x, (cols,), w, eps=_EPS)
    if op == "softmax":
        return lambda: torch.softmax(x, dim=-1)
    if op == "gelu":
        return lambda: F.gelu(x, approximate="tanh")
    if op == "silu":
        return lambda: F.silu(x)
    target = out if out is not None else torch.empty_like(x)
    return lambda: target.copy_(x)


def apply(op: str, x: torch.Tensor) -> torch.Tensor:
    """One op on ``x`` (weights, where it has any, are random)."""
    return make_call(op, x)()


def reference(op: str, x: torch.Tensor, w: torch.Tensor | None = None,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """The op in float64 on the CPU, written out from its definition."""
    import torch

    x = x.detach().cpu().double()
    if op == "layernorm":
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + _EPS)
        return y * w.cpu().double() + bias.cpu().double()  # type: ignore[union-attr]
    if op == "rmsnorm":
        y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + _EPS)
        return y * w.cpu().double()  # type: ignore[union-attr]
    if op == "softmax":
        e = torch.exp(x - x.max(-1, keepdim=True).values)
        return e / e.sum(-1, keepdim=True)
    if op == "gelu":
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if op == "silu":
        return x / (1 + torch.exp(-x))
    return x.clone()


def launch(op: str, rows: int, cols: int, *, dtype: str = "fp32", device: str = "cpu"
           ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Launcher: random input (and weights), one call. Returns (x, w, bias, out); the copy's
    output is poisoned with NaN first, so an unwritten element fails the check."""
    import torch
    import torch.nn.functional as F

    _check_op(op)
    t = torch_dtype(dtype)
    x = torch.randn(rows, cols, dtype=t, device=device)
    w = torch.randn(cols, dtype=t, device=device) if _params(op) else None
    bias = torch.randn(cols, dtype=t, device=device) if _params(op) == 2 else None
    if op == "layernorm":
        out = F.layer_norm(x, (cols,), w, bias, eps=_EPS)
    elif op == "rmsnorm":
        out = F.rms_norm(x, (cols,), w, eps=_EPS)
    elif op == "copy":
        out = torch.full_like(x, float("nan"))
        out.copy_(x)
    else:
        out = make_call(op, x)()
    return x, w, bias, out


def check(op: str, *, rows: int, cols: int, dtype: str = "fp32", device: str = "cpu"
          ) -> CheckResult:
    """Compare one op with its float64 definition.

    >>> check("rmsnorm", rows=37, cols=61).ok
    True
    """
    x, w, bias, out = launch(op, rows, cols, dtype=dtype, device=device)
    ref = reference(op, x, w, bias)
    return CheckResult(name=f"{op} rows={rows} cols={cols} {dtype} {device}",
                       rel_error=relative_error(out, ref), tolerance=TOLERANCE[dtype])


def bench_elementwise(*, op: str, rows: int, cols: int, dtype: str, device: str,
                      config: TimingConfig | None = None) -> BenchResult:
    """Time one op on a fresh random (rows, cols) input; GB/s counted beside it."""
    import torch

    _check_op(op)
    x = torch.randn(rows, cols, dtype=torch_dtype(dtype), device=device)
    timing = time_fn(make_call(op, x), device=device, refresh=x.normal_, config=config)
    return BenchResult.from_timing(timing, flops=flops(op, rows, cols),
                                   bytes=bytes_moved(op, rows, cols, dtype=dtype))
