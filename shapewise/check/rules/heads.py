"""Attention-head rules: SW003, a head dim that FlashAttention runs on its fast paths.

The head options (:func:`head_options`, :func:`kv_heads_for`) are shared with the rules that
regroup heads (SW002, SW005). See the package docstring for how a rule is declared.
"""

from __future__ import annotations

import math

from shapewise.check.rules.base import (
    HEAD_DIM_MAX,
    HEAD_DIM_MIN_MULTIPLE,
    HEAD_DIM_MULTIPLE,
    Basis,
    CheckContext,
    Finding,
    Rule,
    Severity,
    make_finding,
    register,
    round_up,
    speedups,
)
from shapewise.check.rules.traced import attention_pair, trace_step
from shapewise.model.shape import ModelShape


def kv_heads_for(a: int, g: int, a2: int, tp: int) -> int | None:
    """KV heads for ``a2`` query heads: MHA stays MHA; GQA keeps its group size if it can,
    else the divisor of a2 (split by tp) nearest g·a2/a."""
    if g == a:
        return a2
    group = a // g
    if a2 % group == 0 and (a2 // group) % tp == 0:
        return a2 // group
    target = g * a2 / a
    options = [x for x in range(tp, a2 + 1, tp) if a2 % x == 0]
    return min(options, key=lambda x: (abs(x - target), x)) if options else None


def head_options(shape: ModelShape, tp: int, *, min_multiple: int = HEAD_DIM_MULTIPLE
                  ) -> list[tuple[int, int, int]]:
    """(heads, kv heads, head dim) whose head dim is a multiple of ``min_multiple`` (<= 256)
    and whose heads split over ``tp``."""
    h = shape.hidden_size
    out = []
    if shape.decoupled_head_dim:  # the head dim is the config's own: only the count moves
        d = shape.head_dim
        if d % min_multiple:
            return []
        a = shape.num_attention_heads
        for a2 in range(tp, 2 * a + tp, tp):
            g2 = kv_heads_for(a, shape.kv_heads, a2, tp)
            if g2 is not None:
                out.append((a2, g2, d))
        return out
    for d in range(min_multiple, HEAD_DIM_MAX + 1, min_multiple):
        if h % d:
            continue
        a2 = h // d
        if a2 % tp:
            continue
        g2 = kv_heads_for(shape.num_attention_heads, shape.kv_heads, a2, tp)
        if g2 is not None:
            out.append((a2, g2, d))
    return out


def _head_dim(ctx: CheckContext) -> list[Finding]:
    """SW003 on a shape, as its entry below says."""
    shape = ctx.shape
    if shape is None:
        return []
    d, h, a, g = shape.head_dim, shape.hidden_size, shape.num_attention_heads, shape.kv_heads
    if d % HEAD_DIM_MULTIPLE == 0:
        return []
    floor: Severity = "warning" if d % HEAD_DIM_MIN_MULTIPLE else "info"
    why = ("not even a multiple of 8: FlashAttention has no kernel for it and attention "
           "falls back to the unfused path" if d % HEAD_DIM_MIN_MULTIPLE else
           f"FlashAttention runs it in its {min(HEAD_DIM_MAX, 32 * math.ceil(d / 32))}-wide "
           "kernel; its fast paths are 64 and 128")
    if shape.decoupled_head_dim:
        return _head_dim_decoupled(ctx, shape, floor, why)
    options = head_options(shape, ctx.tp)
    if not options:
        return [make_finding(
            ctx, "SW003", floor=floor,
            message=(f"head_dim {d} = hidden_size {h} / num_attention_heads {a} is not a "
                     f"multiple of {HEAD_DIM_MULTIPLE} ({why}); no head count gives one for "
                     f"hidden_size {h}: change hidden_size (SW002)"),
            field="num_attention_heads", value=a, fix=None)]
    priced = []
    for a2, g2, d2 in options:
        new = ctx.price(shape.replace(num_attention_heads=a2, num_key_value_heads=g2))
        basis: Basis = "time" if g2 * d2 == g * d else "throughput"
        kernel, step = speedups(ctx.estimate, new, ("attention",), basis)
        priced.append((a2, g2, d2, kernel, step, basis))
    # fastest step first; unpriced (tp cannot split the current shape): nearest head dim
    a2, g2, d2, kernel, step, basis = min(
        priced, key=lambda p: (-(p[4] or 0), abs(p[2] - d), p[2]))
    if floor == "info" and step is not None and step <= 1:
        return []  # fused-kernel head dim and no faster grouping: a choice, not a defect
    kv = f" and num_key_value_heads {g} → {g2}" if g != a and g2 != g else ""
    others = ", ".join(f"{x} heads (head_dim {z})" + (f": step {(s - 1) * 100:+.1f}%"
                                                      if s else "")
                       for x, _, z, _, s, _ in priced if x != a2)
    return [make_finding(
        ctx, "SW003", floor=floor,
        message=(f"head_dim {d} = hidden_size {h} / num_attention_heads {a} is not a multiple "
                 f"of {HEAD_DIM_MULTIPLE} ({why}); use {a2} heads (head_dim {d2}){kv}"),
        field="num_attention_heads", value=a, fix=a2, gemm_speedup=kernel, step_speedup=step,
        kernel="attention", basis=basis,
        detail=f"also possible: {others}" if others else "")]


def _head_dim_decoupled(ctx: CheckContext, shape: ModelShape, floor: Severity,
                        why: str) -> list[Finding]:
    """SW003 for a config that states its head dim: the fix is the head dim itself (the
    multiple of 64 next to it that the cost model prices fastest per FLOP)."""
    d = shape.head_dim
    priced = []
    for d2 in sorted({(d // HEAD_DIM_MULTIPLE) * HEAD_DIM_MULTIPLE,
                      round_up(d, HEAD_DIM_MULTIPLE)}):
        if not HEAD_DIM_MULTIPLE <= d2 <= HEAD_DIM_MAX:
            continue
        new = ctx.price(shape.replace(head_dim=d2))
        kernel, step = speedups(ctx.estimate, new, ("attention", "qkv_proj", "out_proj"),
                             "throughput")
        priced.append((d2, kernel, step))
    if not priced:
        return []
    d2, kernel, step = min(priced, key=lambda p: (-(p[2] or 0), abs(p[0] - d)))
    if floor == "info" and step is not None and step <= 1:
        return []
    return [make_finding(
        ctx, "SW003", floor=floor,
        message=(f"head_dim {d} (stated by the config; a·d = {shape.q_size}) is not a "
                 f"multiple of {HEAD_DIM_MULTIPLE} ({why}); use head_dim {d2}"),
        field="head_dim", value=d, fix=d2, gemm_speedup=kernel, step_speedup=step,
        kernel="attention", basis="throughput",
        detail="the attention width a·d and its projections change with it")]


def _head_dim_traced(ctx: CheckContext) -> list[Finding]:
    tr = ctx.trace
    assert tr is not None
    out = []
    for att in tr.attentions:
        d, heads = att.head_dim, att.heads
        if d % HEAD_DIM_MULTIPLE == 0:
            continue
        width = heads * d
        best = None
        old = attention_pair(ctx, att)
        for d2 in range(HEAD_DIM_MULTIPLE, HEAD_DIM_MAX + 1, HEAD_DIM_MULTIPLE):
            if width % d2:
                continue
            h2 = width // d2
            kv2 = h2 if att.kv_heads == heads else (
                h2 * att.kv_heads // heads if (h2 * att.kv_heads) % heads == 0 else h2)
            new = attention_pair(ctx, att, heads=h2, head_dim=d2, kv_heads=kv2)
            if best is None or new < best[2]:
                best = (h2, d2, new)
        floor: Severity = "warning" if d % HEAD_DIM_MIN_MULTIPLE else "info"
        if best is None:
            out.append(make_finding(
                ctx, "SW003", floor=floor,
                message=(f"{att.name}: head_dim {d} is not a multiple of {HEAD_DIM_MULTIPLE}"
                         f" and no head count of the {width}-wide attention gives one"),
                field=f"{att.name}.heads", value=heads, fix=None))
            continue
        h2, d2, new = best
        if d % HEAD_DIM_MIN_MULTIPLE == 0 and new >= old:
            continue  # fused-kernel head dim and no faster grouping: a choice, not a defect
        out.append(make_finding(
            ctx, "SW003", floor=floor,
            message=(f"{att.name}: head_dim {d} is not a multiple of {HEAD_DIM_MULTIPLE} "
                     f"(FlashAttention's fast paths are 64 and 128); use {h2} "
                     f"head{'s' if h2 != 1 else ''} of {d2}"),
            field=f"{att.name}.heads", value=heads, fix=h2, gemm_speedup=old / new,
            step_speedup=trace_step(ctx, (old - new) * att.count, 0.0, "time"),
            kernel="attention", basis="time",
            detail=(f"attention batch {att.batch}, {heads} heads × {d}, seq {att.seq_len}"
                    f"{', causal' if att.causal else ''}: {old * att.count * 1e3:.2f} ms → "
                    f"{new * att.count * 1e3:.2f} ms per step")))
    return out


head_dim = register(Rule(
    id="SW003", name="head-dim", field="num_attention_heads",
    doc="""Head dim h/a a multiple of 64 (a multiple of 8 at the very least).

    Why: FlashAttention compiles head dims in buckets of 32 up to 256 and its fast paths are
    64 and 128; a head dim of 80 runs the 96-wide kernel, and one that is not a multiple of 8
    has no fused kernel at all (falls back to materialised attention). More factors of two
    help, with little gain past 64 (co-design rule 3). Fix: the head count whose head dim is
    a multiple of 64 and whose step the cost model prices fastest (the KV heads follow; the
    parameters do not change). Speedup: attention and the step, same work.
    """,
    find=_head_dim, traced=_head_dim_traced,
))
