"""Pricing a traced module: the traced GEMMs and attention calls, and variants of them.

A traced module has no :class:`~shapewise.step.Estimate`; its "step" is the sum of its
traced GEMMs (forward and backward) and attention calls, priced through the shared ops
(:meth:`CheckContext.gemm`, :meth:`CheckContext.attention`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from shapewise.check.rules.base import Basis, CheckContext
from shapewise.check.trace import Trace, TracedAttention, TracedGemm
from shapewise.cost.attention import attention_flops


def trace_cost(ctx: CheckContext) -> tuple[float, float]:
    """(seconds, FLOPs) of every traced GEMM and attention call, one step."""
    key = ("trace-cost",)
    if key not in ctx._cache:
        tr = ctx.trace
        assert tr is not None
        t = sum(ctx.gemm(g.m, g.n, g.k, g.batch) * g.count for g in tr.gemms)
        f = sum(g.flops * g.count for g in tr.gemms)
        for a in tr.attentions:
            t += attention_pair(ctx, a) * a.count
            f += attention_flops_of(a, tr.backward) * a.count
        ctx._cache[key] = (t, f)
    return ctx._cache[key]


def attention_pair(ctx: CheckContext, a: TracedAttention, *, heads: int | None = None,
                   head_dim: int | None = None, kv_heads: int | None = None,
                   seq_len: int | None = None) -> float:
    """Forward (+ backward when traced) time of one attention call, optionally changed."""
    s, s_kv = seq_len or a.seq_len, seq_len or a.seq_len_kv
    kw = dict(batch=a.batch, heads=heads or a.heads, seq_len=s, head_dim=head_dim or a.head_dim,
              causal=a.causal and s <= s_kv, kv_heads=kv_heads or a.kv_heads, seq_len_kv=s_kv)
    t = ctx.attention(**kw)  # type: ignore[arg-type]
    if ctx.trace is not None and ctx.trace.backward:
        t += ctx.attention(**kw, backward=True)  # type: ignore[arg-type]
    return t


def attention_flops_of(a: TracedAttention, backward: bool, seq_len: int | None = None
                       ) -> float:
    """FLOPs of one attention call (×3 with its backward), optionally at ``seq_len``."""
    s = seq_len or a.seq_len
    f = attention_flops(batch=a.batch, heads=a.heads, seq_len=s, head_dim=a.head_dim,
                        causal=a.causal and s <= (seq_len or a.seq_len_kv),
                        seq_len_kv=seq_len or a.seq_len_kv)
    return f * (3 if backward else 1)


def trace_step(ctx: CheckContext, dt: float, df: float, basis: Basis) -> float | None:
    """Step speedup of a change that saves ``dt`` seconds and adds ``df`` FLOPs."""
    t, f = trace_cost(ctx)
    if t <= 0 or t - dt <= 0:
        return None
    if basis == "time":
        return t / (t - dt)
    return (t / f) / ((t - dt) / (f + df))


def reprice(ctx: CheckContext, gemms: Iterable[TracedGemm],
            change: Callable[[int], int]) -> tuple[float, float, float, float]:
    """(old s, new s, old FLOPs, new FLOPs) of ``gemms`` with every dim mapped by ``change``."""
    t0 = t1 = f0 = f1 = 0.0
    for g in gemms:
        new = replace(g, m=change(g.m), n=change(g.n), k=change(g.k))
        t0 += ctx.gemm(g.m, g.n, g.k, g.batch) * g.count
        t1 += ctx.gemm(new.m, new.n, new.k, new.batch) * new.count
        f0 += g.flops * g.count
        f1 += new.flops * new.count
    return t0, t1, f0, f1


def by_name(trace: Trace) -> dict[str, list[TracedGemm]]:
    """The traced GEMMs grouped by module name (forward and backward together)."""
    groups: dict[str, list[TracedGemm]] = {}
    for g in trace.gemms:
        groups.setdefault(g.name or "(unnamed)", []).append(g)
    return groups


def trace_vocab(trace: Trace) -> int | None:
    """The vocabulary of a traced language model: its largest embedding table."""
    if not trace.embeddings:
        return None
    return max(num for _, num, _ in trace.embeddings)
