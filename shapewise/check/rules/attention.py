"""Attention-kernel rules: SW020, a slower backend than another that runs the shape; SW021,
a shape that forces PyTorch's dispatch off the fused kernels.

Both price the step through ``shapewise.estimate`` with the other backend or head dim, so
the gain is the cost model's (docs/cost-model.md §2, the per-backend attention model).
See the package docstring for how a rule is declared.
"""

from __future__ import annotations

from shapewise.check.rules.base import (
    CheckContext,
    Finding,
    Rule,
    make_finding,
    register,
    speedups,
)
from shapewise.check.rules.heads import kv_heads_for
from shapewise.cost.attention import BACKENDS, available_backends, default_backend
from shapewise.cost.attention_backends import attention_backend_params

#: the kernel must be at least this much faster for SW020 to name it: the per-backend
#: fits are within ~5-10% of their timings (docs/validation.md), so closer calls are noise
BACKEND_MIN_GAIN = 1.10
#: what PyTorch's dispatch falls back to when the fused flash/cuDNN kernels refuse a shape
SLOW_FALLBACKS = ("sdpa-efficient", "sdpa-math")


def _in_use(ctx: CheckContext) -> str | None:
    shape = ctx.shape
    if shape is None or ctx.estimate is None or shape.arch == "vit":
        return None
    return ctx.attention_backend or default_backend(
        ctx.gpu, dtype=ctx.dtype, head_dim=shape.head_dim, seq_len=ctx.seq_len,
        seq_len_kv=ctx.seq_len)


def _fitted(ctx: CheckContext, backend: str) -> bool:
    """Whether ``backend`` has fitted parameters on this GPU's chip (not only priors)."""
    return attention_backend_params(ctx.gpu, backend, ctx.dtype)[1].startswith("fitted")


def _backend(ctx: CheckContext) -> list[Finding]:
    """SW020 on a shape, as its entry below says."""
    current = _in_use(ctx)
    if current is None:
        return []
    shape = ctx.shape
    assert shape is not None and ctx.estimate is not None
    options = [b for b in available_backends(ctx.gpu, dtype=ctx.dtype, head_dim=shape.head_dim,
                                             seq_len=ctx.seq_len, seq_len_kv=ctx.seq_len)
               if b != current and BACKENDS[b].fused and _fitted(ctx, b)]
    priced = []
    for b in options:
        new = ctx.price(attention_backend=b)
        kernel, step = speedups(ctx.estimate, new, ("attention",), "time")
        if kernel is not None and step is not None:
            priced.append((b, kernel, step))
    if not priced:
        return []
    best, kernel, step = max(priced, key=lambda p: p[2])
    if kernel < BACKEND_MIN_GAIN:
        return []
    how = ("stated by the run" if ctx.attention_backend else "PyTorch's SDPA default")
    others = ", ".join(f"{b} {k:.2f}× (step {(s - 1) * 100:+.1f}%)"
                       for b, k, s in sorted(priced, key=lambda p: -p[2])
                       if b != best and k > 1)
    return [make_finding(
        ctx, "SW020",
        message=(f"attention runs {current} ({how}); {best} runs this shape's attention "
                 f"{kernel:.2f}× faster on {ctx.gpu.name}"),
        field="attention_backend", value=current, fix=best, gemm_speedup=kernel,
        step_speedup=step, kernel="attention", basis="time",
        detail=("alternatives priced with parameters fitted on this GPU's chip"
                + (f"; also: {others}" if others else "")))]


def _fallback_head_dims(ctx: CheckContext, d: int) -> list[int]:
    """Head dims next to ``d`` that a fused kernel takes: multiples of 64 up to 256."""
    out = {min(256, max(64, 64 * (d // 64))), min(256, 64 * -(-d // 64))}
    return sorted(x for x in out if x != d)


def _fallback(ctx: CheckContext) -> list[Finding]:
    """SW021 on a shape, as its entry below says."""
    shape = ctx.shape
    if shape is None or ctx.estimate is None or ctx.attention_backend or shape.arch == "vit":
        return []
    d = shape.head_dim
    if d % 8:
        return []  # SW003 says it: a head dim with no fused kernel at all
    current = _in_use(ctx)
    if current not in SLOW_FALLBACKS:
        return []
    fused = [b for b in available_backends(ctx.gpu, dtype=ctx.dtype, head_dim=64)
             if BACKENDS[b].fused and b not in SLOW_FALLBACKS]
    if not fused:
        return []  # the GPU or dtype has no flash/cuDNN kernel at any head dim (V100, fp32)
    h, a = shape.hidden_size, shape.num_attention_heads
    priced = []
    for d2 in _fallback_head_dims(ctx, d):
        if shape.decoupled_head_dim:  # the config states its head dim: change it
            new_shape, fix, field = shape.replace(head_dim=d2), d2, "head_dim"
        else:  # the head dim is h/a: change the head count (the KV heads follow)
            if h % d2 or (h // d2) % ctx.tp:
                continue
            g2 = kv_heads_for(a, shape.kv_heads, h // d2, ctx.tp)
            if g2 is None:
                continue
            new_shape = shape.replace(num_attention_heads=h // d2, num_key_value_heads=g2)
            fix, field = h // d2, "num_attention_heads"
        kernel, step = speedups(ctx.estimate, ctx.price(new_shape),
                                ("attention", "qkv_proj", "out_proj"), "throughput")
        priced.append((d2, fix, field, kernel, step))
    if not priced:
        return []
    d2, fix, field, kernel, step = max(priced, key=lambda p: (p[4] or 0, -abs(p[0] - d)))
    why = ("above 256" if d > 256 else "a head dim the flash and cuDNN kernels do not take")
    use = (f"head_dim {d2}" if field == "head_dim" else f"{fix} heads (head_dim {d2})")
    return [make_finding(
        ctx, "SW021", floor="warning",
        message=(f"head_dim {d} ({why}) makes PyTorch's SDPA fall back to {current} on "
                 f"{ctx.gpu.name}; use {use}"),
        field=field, value=d if field == "head_dim" else a, fix=fix, gemm_speedup=kernel,
        step_speedup=step, kernel="attention", basis="throughput",
        detail=f"fused kernels here: {', '.join(fused)}")]


attention_backend = register(Rule(
    id="SW020", name="attention-backend", field="attention_backend", severity="info",
    doc="""The attention kernel: no slower than another that runs the shape on this GPU.

    Why: the backends differ by up to 3× on the same GPU (cudnn_frontend_sdpa.csv: FA2 runs
    at about a third of cuDNN's speed on B200, PyTorch's FA2 at half of it on H200; issue
    #11). The backend in use is the one the config states (HF ``attn_implementation``,
    Megatron ``--use-flash-attn`` / ``--attention-backend``), ``--attention-backend``, or
    PyTorch's SDPA dispatch. Fix: the fused backend that runs the shape and that the cost
    model prices fastest, among those with parameters fitted on this GPU's chip, when it is
    at least 10% faster. Speedup: attention and the step, same work.
    """,
    find=_backend,
))

attention_fallback = register(Rule(
    id="SW021", name="attention-fallback", field="head_dim", severity="warning",
    doc="""A head dim that keeps PyTorch's SDPA on its fused flash/cuDNN kernels.

    Why: flash attention takes head dims up to 256 and cuDNN up to 128 (256 on Hopper and
    Blackwell); above that PyTorch's dispatch falls back to the memory-efficient kernel or
    the math path (pytorch/pytorch sdp_utils.cpp, check_head_dim_size_flash and
    check_cudnn_tensor_shapes), several times slower. A head dim that is not a multiple of 8
    is SW003's. Fix: the multiple of 64 next to it (at most 256) the cost model prices
    fastest per FLOP. Speedup: attention and the projections, per model FLOP.
    """,
    find=_fallback,
))
