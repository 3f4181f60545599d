"""Alignment rules: the sizes that are GEMM dimensions, multiples of 64 (128 bytes).

SW001 vocabulary, SW002 hidden size, SW004 tokens per micro-batch, SW008 FFN size, SW011
every traced GEMM size. See the package docstring for how a rule is declared.
"""

from __future__ import annotations

import math
from typing import Any

from shapewise.check.rules.base import (
    FFN_MIN_GAIN,
    FFN_TOLERANCE,
    FFN_WINDOW,
    HIDDEN_MULTIPLE,
    MIN_ALIGN,
    TOKEN_MULTIPLE,
    VOCAB_MULTIPLE,
    Change,
    CheckContext,
    Estimate,
    Finding,
    Rule,
    Severity,
    make_finding,
    ops_time,
    register,
    round_up,
    sizes_near,
    speedups,
    tokens_of,
    triple,
)
from shapewise.check.rules.heads import kv_heads_for
from shapewise.check.rules.traced import (
    attention_flops_of,
    attention_pair,
    by_name,
    reprice,
    trace_step,
    trace_vocab,
)
from shapewise.model.shape import ModelShape


# ------------------------------------------------------------------------ SW001 vocab
def _vocab_multiple(ctx: CheckContext) -> int:
    return VOCAB_MULTIPLE * ctx.tp


def _vocab_message(ctx: CheckContext, fix: int) -> str:
    v, t = ctx.value_of("vocab_size"), ctx.tp
    why = (f"{VOCAB_MULTIPLE} × tp {t}, so each rank's slice of the logits stays aligned"
           if t > 1 else "128-byte tensor-core loads")
    return (f"vocab_size {v} is not a multiple of {_vocab_multiple(ctx)} ({why}); pad it to "
            f"{fix}: the extra rows are never predicted")


def _vocab_detail(ctx: CheckContext, fix: int, new: Estimate | None) -> str:
    shape = ctx.shape
    assert shape is not None and shape.vocab_size is not None
    v, t = shape.vocab_size, ctx.tp
    if ctx.estimate is not None and new is not None:
        return (f"logits GEMM ({tokens_of(ctx)}×{v // t}×{shape.hidden_size}) and its two "
                f"backward GEMMs: {ops_time(ctx.estimate, ('logits',)) * 1e3:.2f} ms → "
                f"{ops_time(new, ('logits',)) * 1e3:.2f} ms per step")
    if v % t:
        return f"vocab_size {v} does not split over tp={t} ranks at all (see SW006)"
    return ""


def _vocab_floor(ctx: CheckContext, fix: int) -> Severity:
    v, t = ctx.value_of("vocab_size"), ctx.tp
    return "warning" if (v // max(1, t)) % MIN_ALIGN or v % t else "info"


def _vocab_traced(ctx: CheckContext) -> list[Finding]:
    tr = ctx.trace
    assert tr is not None
    v = trace_vocab(tr)
    if v is None or v % VOCAB_MULTIPLE == 0:
        return []
    groups = by_name(tr)
    logits = {name: gs for name, gs in groups.items()
              if any(g.phase == "forward" and g.n == v for g in gs)}
    if not logits:
        return []
    fix = round_up(v, VOCAB_MULTIPLE)
    out = []
    for name, gs in logits.items():
        t0, t1, _, _ = reprice(ctx, gs, lambda x: fix if x == v else x)
        fwd = next(g for g in gs if g.phase == "forward")
        out.append(make_finding(
            ctx, "SW001", floor="warning" if v % MIN_ALIGN else "info",
            message=(f"{name}: the logits GEMM has vocab {v}, not a multiple of "
                     f"{VOCAB_MULTIPLE} (128-byte tensor-core loads); pad the embedding "
                     f"and output layer to {fix}: the extra rows are never predicted"),
            field=f"{name}.vocab_size", value=v, fix=fix,
            gemm_speedup=t0 / t1 if t1 else None,
            step_speedup=trace_step(ctx, t0 - t1, 0.0, "time"),
            kernel=f"{name} GEMM", basis="time",
            detail=(f"{name}: forward {fwd.m}×{fwd.n}×{fwd.k} and backward GEMMs "
                    f"{t0 * 1e3:.2f} ms → {t1 * 1e3:.2f} ms per step; step = traced GEMMs "
                    "+ attention")))
    return out


vocab_alignment = register(Rule(
    id="SW001", name="vocab-alignment", field="vocab_size",
    doc="""Vocabulary a multiple of 64, and of 64·tp when the logits are vocab-parallel.

    Why: the logits GEMM (b·s × h) · (h × v/t) and its backward have v/t as a contiguous
    dimension; an odd size forces narrow tensor-core loads and a ragged last tile. nanoGPT
    pads GPT-2's 50257 to 50304 ("~25% speedup"); Megatron pads to a multiple of
    128·tp. Fix: pad the embedding and the output layer to the next multiple; the extra
    rows are never predicted. Speedup: the logits GEMMs and the step, same work ("time").
    A traced module: the largest ``nn.Embedding`` is the vocabulary, and the GEMMs with
    that dimension are the logits.
    """,
    applies=lambda c: (c.shape is not None and c.shape.vocab_size is not None
                       and c.shape.vocab_size % _vocab_multiple(c) != 0),
    fix=lambda c: round_up(c.value_of("vocab_size"), _vocab_multiple(c)),
    severity=_vocab_floor,
    change=lambda c, fix: Change(shape={"vocab_size": fix}),
    kernels=("logits",), kernel="logits GEMM", basis="time",
    message=_vocab_message, detail=_vocab_detail, traced=_vocab_traced,
))


# ----------------------------------------------------------------------- SW002 hidden
def _hidden_fix(shape: ModelShape) -> tuple[int, int]:
    """(hidden size, heads): the nearest multiple of 64 that the heads divide into a
    16-byte-aligned head dim, or, if that is more than 25% away, the next multiple of 64
    with the heads regrouped into heads of 64 or 128."""
    h, a = shape.hidden_size, shape.num_attention_heads
    # a decoupled head dim does not depend on h: any multiple of 64 will do
    unit = HIDDEN_MULTIPLE if shape.decoupled_head_dim else math.lcm(HIDDEN_MULTIPLE,
                                                                     a * MIN_ALIGN)
    lo, hi = (h // unit) * unit, round_up(h, unit)
    fix = hi if lo < unit or hi - h <= h - lo else lo
    heads = a
    if abs(fix - h) > h // 4 and not shape.decoupled_head_dim:
        # too far: keep h near, regroup the heads instead (a stated head dim stays as it is)
        fix = round_up(h, HIDDEN_MULTIPLE)
        heads = min((fix // d for d in (64, 128) if fix % d == 0),
                    key=lambda x: (abs(x - a), x), default=a)
    return fix, heads


def _hidden_change(ctx: CheckContext, fix: int) -> Change:
    shape = ctx.shape
    assert shape is not None
    h, a, f = shape.hidden_size, shape.num_attention_heads, shape.ffn_size
    heads = _hidden_fix(shape)[1]
    changes: dict[str, Any] = {"hidden_size": fix,
                               "intermediate_size": 4 * fix if f == 4 * h else f}
    if heads != a:
        g = shape.kv_heads
        changes["num_attention_heads"] = heads
        changes["num_key_value_heads"] = (heads if g == a
                                          else kv_heads_for(a, g, heads, 1) or heads)
    return Change(shape=changes)


def _hidden_message(ctx: CheckContext, fix: int) -> str:
    shape = ctx.shape
    assert shape is not None
    heads = _hidden_fix(shape)[1]
    with_heads = (f" with {heads} heads (head_dim {fix // heads})"
                  if heads != shape.num_attention_heads else "")
    return (f"hidden_size {shape.hidden_size} is not a multiple of {HIDDEN_MULTIPLE}: it is "
            f"a GEMM dimension in every projection of every layer; use {fix}{with_heads}")


hidden_alignment = register(Rule(
    id="SW002", name="hidden-alignment", field="hidden_size",
    doc="""Hidden size a multiple of 64.

    Why: h is the K of the QKV and MLP-up GEMMs and the N of the output projection and
    MLP-down, in every layer; co-design rule 3 (Anthony et al. 2024). Fix: the nearest
    multiple of 64 that the head count divides into a head dim that is a multiple of 8
    (if that is more than 25% away: the next multiple of 64, with heads of 64 or 128); a 4h
    FFN follows it. Speedup on the "throughput" basis, since the model's FLOPs change.
    """,
    applies=lambda c: c.shape is not None and c.shape.hidden_size % HIDDEN_MULTIPLE != 0,
    fix=lambda c: _hidden_fix(c.shape)[0],
    severity=lambda c, fix: "warning" if c.value_of("hidden_size") % MIN_ALIGN else "info",
    change=_hidden_change,
    kernels=("qkv_proj", "out_proj", "mlp_up", "mlp_gate_up", "mlp_down"),
    kernel="layer GEMMs", basis="throughput", message=_hidden_message,
    detail=lambda c, fix, new: ("FFN scaled with it (4h)"
                                if c.value_of("intermediate_size") == 4 * c.value_of(
                                    "hidden_size") else ""),
))


# ----------------------------------------------------------------------- SW004 tokens
def _tokens_alignment(ctx: CheckContext) -> list[Finding]:
    """SW004, as its entry below says."""
    b, s = ctx.micro_batch, ctx.seq_len
    if ctx.trace is not None:
        b = ctx.trace.micro_batch or 0
        s = ctx.trace.seq_len
    if not b or not s or (b * s) % TOKEN_MULTIPLE == 0:
        return []
    T = b * s
    note = ""
    vit = ctx.shape is not None and ctx.shape.arch == "vit"
    if vit:
        unit = TOKEN_MULTIPLE // math.gcd(s, TOKEN_MULTIPLE)
        b2 = round_up(b + 1, unit)
        if b2 > 4 * b:  # settle for 16-byte alignment
            b2 = round_up(b + 1, MIN_ALIGN // math.gcd(s, MIN_ALIGN))
        fld, value, fix, new_b, new_s = "micro_batch", b, b2, b2, s
        # a larger batch is faster for its size, not its alignment: no gain is claimed
        note = ("; a run setting, not the shape: its speedup would be mostly the larger "
                "batch itself, so none is priced")
    else:
        unit = TOKEN_MULTIPLE // math.gcd(b, TOKEN_MULTIPLE)
        lo, hi = (s // unit) * unit, round_up(s, unit)
        cap = None
        if ctx.shape is not None and ctx.shape.position_embedding == "learned":
            cap = ctx.shape.max_position_embeddings
        fix = lo if lo > 0 and (s - lo <= hi - s or (cap is not None and hi > cap)) else hi
        fld, value, new_b, new_s = "seq_len", s, b, fix
    T2 = new_b * new_s
    kernel = step = None
    if vit:  # a run setting, not the shape: no gain claimed (see the note above)
        pass
    elif ctx.trace is not None:
        tr = ctx.trace
        t0, t1, f0, f1 = reprice(ctx, tr.gemms, lambda x: T2 if x == T else x)
        dt, df = t0 - t1, f1 - f0
        for att in tr.attentions:
            if att.seq_len == s and new_s != s:
                dt += (attention_pair(ctx, att) - attention_pair(ctx, att, seq_len=new_s)
                       ) * att.count
                df += (attention_flops_of(att, tr.backward, new_s)
                       - attention_flops_of(att, tr.backward)) * att.count
        kernel = (t0 / f0) / (t1 / f1) if t1 and f0 and f1 else None
        step = trace_step(ctx, dt, df, "throughput")
    else:
        new = ctx.price(micro_batch=new_b, seq_len=new_s)
        kernel, step = speedups(ctx.estimate, new, ("qkv_proj", "out_proj", "mlp_up",
                                                  "mlp_gate_up", "mlp_down", "logits"),
                             "throughput")
    return [make_finding(
        ctx, "SW004", floor="warning" if T % MIN_ALIGN else "info",
        message=(f"micro_batch × seq_len = {b} × {s} = {T} is not a multiple of "
                 f"{TOKEN_MULTIPLE}: it is the M of every GEMM and the K of every "
                 f"weight-gradient GEMM; use {fld} {fix} ({new_b} × {new_s} = {T2}){note}"),
        field=fld, value=value, fix=fix, gemm_speedup=kernel, step_speedup=step,
        kernel="GEMMs", basis="throughput")]


tokens_alignment = register(Rule(
    id="SW004", name="tokens-alignment", field="seq_len",
    find=_tokens_alignment, traced=_tokens_alignment,
    doc="""b·s (micro-batch × sequence length) a multiple of 64.

    Why: b·s is the M of every GEMM and the K of every weight-gradient GEMM (dW = Xᵀ·dY),
    where it is the contiguous dimension (co-design rule 3). Fix: the nearest sequence
    length that makes it one (for a ViT, whose tokens are fixed by the image, the next
    micro-batch). Speedup on the "throughput" basis (the tokens change).
    """,
))


# --------------------------------------------------------------------------- SW008 FFN
def _mlp_time(ctx: CheckContext, shape: ModelShape, f: int) -> float:
    """Seconds of the MLP GEMMs (forward and backward) of one layer at FFN size f."""
    T, h, t = tokens_of(ctx), shape.hidden_size, ctx.tp
    up = 2 * f // t if shape.activation == "swiglu" else f // t
    return triple(ctx, T, up, h) + triple(ctx, T, h, f // t)


def _ffn_size(ctx: CheckContext) -> list[Finding]:
    """SW008, as its entry below says."""
    shape, t = ctx.shape, ctx.tp
    if shape is None or ctx.estimate is None or shape.ffn_size % t:
        return []
    f, h = shape.ffn_size, shape.hidden_size
    unit = VOCAB_MULTIPLE * t
    aligned = f % unit == 0
    candidates = set(sizes_near(f, unit, FFN_WINDOW))
    candidates.add(round_up(f, unit))
    if f >= unit:
        candidates.add((f // unit) * unit)
    scores = {c: _mlp_time(ctx, shape, c) / c for c in candidates}
    base = _mlp_time(ctx, shape, f) / f
    fastest = min(scores.values())
    # the nearest size within FFN_TOLERANCE of the fastest: a fix should move the model least
    best = min((c for c in scores if scores[c] <= fastest * (1 + FFN_TOLERANCE)),
               key=lambda c: (abs(c - f), c))
    gain = base / scores[best]
    if aligned and (best == f or gain < FFN_MIN_GAIN):
        return []
    names = ("mlp_up", "mlp_gate_up", "mlp_down")
    new = ctx.price(shape.replace(intermediate_size=best))
    kernel, step = speedups(ctx.estimate, new, names, "throughput")
    ratio = f"{f / h:.3f}·h"
    if shape.activation == "swiglu":
        ratio += f"; 8/3·h = {8 * h / 3:.1f}"
    why = (f"not a multiple of {unit}" + (f" (64 × tp {t})" if t > 1 else "") if not aligned
           else f"aligned, but its MLP GEMMs reach {1 / gain:.0%} of the TFLOP/s they reach "
           f"at {best}")
    return [make_finding(
        ctx, "SW008", floor="warning" if (f // t) % MIN_ALIGN else "info",
        message=(f"intermediate_size {f} ({ratio}) is {why}; use {best}, the size within "
                 f"{FFN_WINDOW:.0%} whose MLP GEMMs run (nearly) fastest per FLOP"),
        field="intermediate_size", value=f, fix=best, gemm_speedup=kernel, step_speedup=step,
        kernel="MLP GEMMs", basis="throughput",
        detail=f"{len(candidates)} sizes priced, multiples of {unit} within {FFN_WINDOW:.0%}")]


ffn_size = register(Rule(
    id="SW008", name="ffn-size", field="intermediate_size", find=_ffn_size,
    doc="""FFN size a multiple of 64 (64·tp per rank), and the fastest near its value.

    Why: f (f/t per rank) is the N of the MLP-up GEMM and the K of MLP-down, the largest
    GEMMs of a layer. For SwiGLU, 8/3·h taken literally is misaligned: at h=4096,
    f=10922 ran at 272.7 TFLOP/s on H100 against 398.4 for f=10944 (co-design rule 6).
    Fix: the size within 5% whose MLP GEMMs the cost model prices at the most TFLOP/s
    (the nearest of those within 1% of the best)
    (reported for an aligned size only when it gains at least 5%). Speedup on the
    "throughput" basis (the FLOPs change).
    """,
))


# ------------------------------------------------------------ SW011 traced GEMM sizes
def _gemm_alignment(ctx: CheckContext) -> list[Finding]:
    """SW011, as its entry below says."""
    tr = ctx.trace
    if tr is None:
        return []
    vocab = trace_vocab(tr)
    align = ctx.align
    users: dict[int, list[str]] = {}
    for g in tr.gemms:
        if g.phase != "forward":
            continue
        for size in (g.n, g.k):
            if size % align and not (size == vocab and vocab % VOCAB_MULTIPLE):
                names = users.setdefault(size, [])
                if (g.name or "(unnamed)") not in names:
                    names.append(g.name or "(unnamed)")
    out = []
    for size, names in sorted(users.items()):
        fix = round_up(size, align)
        t0, t1, _, _ = reprice(ctx, tr.gemms, lambda x, _s=size, _f=fix: _f if x == _s else x)
        gain = t0 / t1 if t1 else None
        if size % MIN_ALIGN == 0 and (gain is None or gain < 1.01):
            continue  # 16-byte aligned and padding buys nothing by the cost model
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        others = sorted(x for x in users if x != size)
        detail = (f"these GEMMs have other misaligned sizes ({', '.join(map(str, others))}): "
                  "pad them together to see the whole gain" if others and
                  (gain is None or gain < 1.01) else "")
        out.append(make_finding(
            ctx, "SW011", floor="warning" if size % MIN_ALIGN else "info",
            message=(f"GEMM size {size} (in or out features of {shown}) is not a multiple of "
                     f"{align}" + ("" if size % MIN_ALIGN == 0 else
                                   " nor of 8 (16 bytes): tensor cores fall back to narrow "
                                   "loads") + f"; pad it to {fix}"),
            field="gemm_size", value=size, fix=fix, gemm_speedup=gain,
            step_speedup=trace_step(ctx, t0 - t1, 0.0, "time"),
            kernel=f"GEMMs with {size}", basis="time", detail=detail))
    return out


gemm_alignment = register(Rule(
    id="SW011", name="gemm-alignment", field="gemm_size", traced=_gemm_alignment,
    doc="""Every traced GEMM's N and K multiples of 64 (the GPU's 128-byte alignment).

    Why: N and K are the contiguous dimensions of the row-major operands; sizes that are not
    multiples of 128 bytes use narrower tensor-core loads, and those that are not multiples
    of 16 bytes fall back further (co-design.md, "Hardware facts"). One finding per
    misaligned size (a model's hidden size shows up in most of its GEMMs). Fix: pad that
    size to the next multiple (zero padding does not change the result). Speedup: every
    traced GEMM with that size, same work. Reported when the padding is faster by the cost
    model, or when the size misses 16-byte alignment. Traced modules only: for a ModelShape
    the field rules cover every GEMM dimension.
    """,
))
