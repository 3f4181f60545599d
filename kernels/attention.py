"""Attention forward and backward through each backend this machine has.

The four parts: the backend rows of :data:`BACKENDS` (each ``setup`` returns the call, or
None when the backend cannot run the problem, as FlashAttention's benchmarks do),
:func:`launch`, :func:`check` (against float64), :func:`bench_attention` (time + TFLOP/s).

Layout: q is (batch, heads, seq_len, head_dim); k and v are (batch, kv_heads, seq_len_kv,
head_dim), with ``heads`` a multiple of ``kv_heads`` (grouped-query attention when they
differ). ``causal`` masks key j from query i when j > i (top-left aligned, as
``scaled_dot_product_attention(is_causal=True)``). The scale is 1/sqrt(head_dim).

Backends:

=============  =========================================================================
row            what runs
=============  =========================================================================
``flash``      SDPA restricted to SDPBackend.FLASH_ATTENTION (also a CPU kernel)
``efficient``  SDPA restricted to SDPBackend.EFFICIENT_ATTENTION (xformers' kernel)
``cudnn``      SDPA restricted to SDPBackend.CUDNN_ATTENTION
``math``       SDPA restricted to SDPBackend.MATH (unfused: materialises the scores)
``flash_attn`` ``flash_attn.flash_attn_func`` when the package is installed (GPU, fp16/bf16)
``triton``     ``triton_attention.attention`` (this package's Triton forward; no backward)
=============  =========================================================================

The problem is a :class:`shapewise.ops.Attention` (see :mod:`shapewise.kernels.problem`
for its FLOPs and bytes, and :class:`~shapewise.kernels.problem.AttentionProblem`, the
kernels' way to write one); a sliding window or a V head dim of its own is unsupported.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import (
    TOLERANCE,
    BenchResult,
    CheckResult,
    Unsupported,
    is_device_failure,
    is_out_of_memory,
    relative_error,
    torch_dtype,
)
from .problem import (
    AttentionProblem,
    attention_bytes,
    attention_flops,
    kv_len,
    unsupported_attention,
)
from .timing import TimingConfig, is_gpu, time_fn

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from shapewise.ops import Attention

__all__ = ["BACKENDS", "AttentionInputs", "AttentionProblem", "Backend", "bench_attention",
           "check", "check_triton_blocks", "get_backend", "launch", "make_inputs", "reference"]


# ---------------------------------------------------------------------------- inputs
@dataclass(slots=True)
class AttentionInputs:
    """q (b, h, s, d); k, v (b, kvh, skv, d); dout like q (for the backward)."""

    q: Any
    k: Any
    v: Any
    dout: Any
    problem: Attention


def make_inputs(p: Attention, *, dtype: str, device: str) -> AttentionInputs:
    """Fresh standard-normal q, k, v, dO (leaves that require grad for a backward).

    Each is stored (batch, seq, heads, head_dim), as a projection followed by a reshape
    leaves it in a transformer, and handed out transposed to (batch, heads, seq, head_dim):
    SDPA takes that view, and flash_attn takes the contiguous (b, s, h, d) view back.
    """
    import torch

    t = torch_dtype(dtype)

    def draw(heads: int, seq: int, grad: bool) -> torch.Tensor:
        x = torch.randn(p.batch, seq, heads, p.head_dim, dtype=t, device=device)
        return x.transpose(1, 2).requires_grad_(grad)

    return AttentionInputs(
        q=draw(p.heads, p.seq_len, p.backward),
        k=draw(p.groups, kv_len(p), p.backward),
        v=draw(p.groups, kv_len(p), p.backward),
        dout=draw(p.heads, p.seq_len, False),
        problem=p,
    )


# ------------------------------------------------------------------------------ backends
Setup = Callable[[AttentionInputs, list[str]], "Callable[[], Any] | None"]


@dataclass(frozen=True, slots=True)
class Backend:
    """One row: ``setup(inputs, notes)`` returns a callable running the pass (forward, or
    backward when ``inputs.problem.backward``), or None and appends the reason to ``notes``."""

    name: str
    setup: Setup


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _probe(call: Callable[[], Any], notes: list[str]) -> bool:
    """Run ``call`` once; on an unsupported-configuration error note why and return False.

    Out-of-memory errors and device failures propagate (the runner handles those itself).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call()
        except (RuntimeError, ValueError, NotImplementedError, AssertionError) as exc:
            if is_out_of_memory(exc) or is_device_failure(exc):
                raise
            # SDPA explains in warnings why each backend declined; keep those first
            reasons = [str(w.message).strip().splitlines()[0] for w in caught][:3]
            notes.extend([*reasons, _first_line(exc)])
            return False
    return True


def _with_backward(fwd: Callable[[], Any], inp: AttentionInputs, notes: list[str],
                   dout: Any = None) -> Callable[[], Any] | None:
    """The forward itself, or a backward over one saved forward graph.

    The backward reuses the graph (``retain_graph``) and resets the gradients of q, k, v
    each call (else each call adds into them), as FlashAttention's ``benchmark_backward``
    does. ``dout`` is dO in the layout ``fwd`` returns (default ``inp.dout``).
    """
    if not inp.problem.backward:
        return fwd if _probe(fwd, notes) else None
    out_holder: list[Any] = []
    if not _probe(lambda: out_holder.append(fwd()), notes):
        return None
    out = out_holder[0]
    grad_out = inp.dout if dout is None else dout

    def bwd() -> None:
        for t in (inp.q, inp.k, inp.v):
            t.grad = None
        out.backward(grad_out, retain_graph=True)

    return bwd if _probe(bwd, notes) else None


def _sdpa(backend_name: str) -> Setup:
    def setup(inp: AttentionInputs, notes: list[str]) -> Callable[[], Any] | None:
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        be = getattr(SDPBackend, backend_name, None)
        if be is None:
            notes.append(f"this torch has no SDPBackend.{backend_name}")
            return None
        p = inp.problem
        kwargs: dict[str, Any] = {"is_causal": p.causal}
        if p.groups != p.heads:
            kwargs["enable_gqa"] = True

        def fwd() -> Any:
            with sdpa_kernel(be):
                return F.scaled_dot_product_attention(inp.q, inp.k, inp.v, **kwargs)

        return _with_backward(fwd, inp, notes)

    return setup


def _flash_attn_setup(inp: AttentionInputs, notes: list[str]) -> Callable[[], Any] | None:
    try:
        from flash_attn import flash_attn_func  # type: ignore[import-not-found]
    except ImportError as exc:
        notes.append(f"flash_attn not importable ({_first_line(exc)})")
        return None
    p = inp.problem
    # flash_attn takes (batch, seq, heads, head_dim): the contiguous storage of the inputs
    q, k, v = (t.transpose(1, 2) for t in (inp.q, inp.k, inp.v))
    return _with_backward(lambda: flash_attn_func(q, k, v, causal=p.causal), inp, notes,
                          dout=inp.dout.transpose(1, 2))


def _triton_setup(inp: AttentionInputs, notes: list[str]) -> Callable[[], Any] | None:
    p = inp.problem
    if p.backward:
        notes.append("the Triton attention kernel is forward only")
        return None
    if not is_gpu(str(inp.q.device.type)) and os.environ.get("TRITON_INTERPRET") != "1":
        notes.append("Triton kernels need a GPU (or TRITON_INTERPRET=1)")
        return None
    try:
        from . import triton_attention
    except ImportError as exc:
        notes.append(f"triton not importable ({_first_line(exc)})")
        return None
    return _with_backward(lambda: triton_attention.attention(inp.q, inp.k, inp.v,
                                                             causal=p.causal), inp, notes)


#: the backend registry, in the order a sweep tries them
BACKENDS: dict[str, Backend] = {
    "flash": Backend("flash", _sdpa("FLASH_ATTENTION")),
    "efficient": Backend("efficient", _sdpa("EFFICIENT_ATTENTION")),
    "cudnn": Backend("cudnn", _sdpa("CUDNN_ATTENTION")),
    "math": Backend("math", _sdpa("MATH")),
    "flash_attn": Backend("flash_attn", _flash_attn_setup),
    "triton": Backend("triton", _triton_setup),
}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {name!r}")
    return BACKENDS[name]


def _setup(backend: str, inp: AttentionInputs, notes: list[str]) -> Callable[[], Any] | None:
    """The backend's call for ``inp``, or None (and why in ``notes``)."""
    row = get_backend(backend)
    why = unsupported_attention(inp.problem)
    if why:
        notes.append(why)
        return None
    return row.setup(inp, notes)


# ------------------------------------------------------------------- reference and check
def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool
              ) -> torch.Tensor:
    """softmax(q·kᵀ/√d + mask)·v in float64 on the CPU, kv heads repeated for GQA."""
    import torch

    q, k, v = (t.detach().cpu().double() for t in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        sq, skv = s.shape[-2:]
        mask = torch.ones(sq, skv, dtype=torch.bool).tril()
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def launch(backend: str, p: Attention, *, dtype: str = "fp32", device: str = "cpu"
           ) -> tuple[AttentionInputs, Any, list[str]]:
    """Launcher: inputs, one forward through ``backend``. Returns (inputs, out, notes);
    ``out`` is None when the backend cannot run the problem (``notes`` says why)."""
    inp = make_inputs(dataclasses.replace(p, backward=False), dtype=dtype, device=device)
    notes: list[str] = []
    call = _setup(backend, inp, notes)
    return inp, (None if call is None else call()), notes


def check(backend: str, p: Attention, *, dtype: str = "fp32", device: str = "cpu"
          ) -> CheckResult:
    """Compare one forward through ``backend`` with the float64 reference.

    >>> p = AttentionProblem(batch=1, heads=4, kv_heads=2, seq_len=37, seq_len_kv=37,
    ...                      head_dim=16, causal=True)
    >>> check("math", p).ok
    True
    """
    inp, out, notes = launch(backend, p, dtype=dtype, device=device)
    name = (f"attention[{backend}] b={p.batch} h={p.heads} kvh={p.groups} s={p.seq_len} "
            f"skv={kv_len(p)} d={p.head_dim} causal={p.causal} {dtype} {device}")
    tol = TOLERANCE[dtype]
    if out is None:
        return CheckResult(name=name, rel_error=math.nan, tolerance=tol, supported=False,
                           reason="; ".join(notes))
    ref = reference(inp.q, inp.k, inp.v, causal=p.causal)
    if backend == "flash_attn":
        out = out.transpose(1, 2)
    if backend == "triton" and dtype == "fp32" and is_gpu(device):
        tol = TOLERANCE["tf32"]  # Triton's float32 tl.dot uses TF32 on a GPU
    return CheckResult(name=name, rel_error=relative_error(out, ref), tolerance=tol)


def check_triton_blocks(p: Attention, *, block_m: int, block_n: int, dtype: str = "fp32",
                        device: str = "cpu") -> CheckResult:
    """The ``triton`` row with explicit (BLOCK_M, BLOCK_N), the output poisoned with NaN
    first so that an element the kernel leaves unwritten fails."""
    import torch

    from . import triton_attention

    inp = make_inputs(p, dtype=dtype, device=device)
    out = torch.full_like(inp.q, float("nan"))
    triton_attention.attention(inp.q, inp.k, inp.v, causal=p.causal, block_m=block_m,
                               block_n=block_n, out=out)
    ref = reference(inp.q, inp.k, inp.v, causal=p.causal)
    tol = TOLERANCE["tf32" if dtype == "fp32" and is_gpu(device) else dtype]
    return CheckResult(
        name=f"triton attention b={p.batch} h={p.heads} kvh={p.groups} s={p.seq_len} "
             f"skv={kv_len(p)} d={p.head_dim} causal={p.causal} blocks={block_m}x{block_n} "
             f"{dtype} {device}",
        rel_error=relative_error(out, ref), tolerance=tol)


# ----------------------------------------------------------------------------- benchmark
def bench_attention(*, backend: str, problem: Attention, dtype: str, device: str,
                    config: TimingConfig | None = None) -> BenchResult:
    """Time the forward (or backward) of ``problem`` through ``backend``.

    Raises :class:`~shapewise.kernels.Unsupported` when the backend cannot run it.
    """
    import torch

    p = problem
    inp = make_inputs(p, dtype=dtype, device=device)
    notes: list[str] = []
    call = _setup(backend, inp, notes)
    if call is None:
        raise Unsupported("; ".join(notes) or f"{backend}: unsupported")

    def refresh() -> None:
        with torch.no_grad():
            if p.backward:
                # q, k, v are saved by the graph the backward reuses: redraw dO only
                inp.dout.normal_()
            else:
                for t in (inp.q, inp.k, inp.v):
                    t.normal_()

    timing = time_fn(call, device=device, refresh=refresh, config=config)
    return BenchResult.from_timing(timing, flops=attention_flops(p),
                                   bytes=attention_bytes(p, dtype))
