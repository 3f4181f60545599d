"""Parallelism rules: sizes that tensor and pipeline parallelism must split, and a tensor
parallelism larger than memory needs.

SW005 heads per rank, SW006 every other tensor-parallel split, SW007 layers per pipeline
stage (errors: the training cannot run), SW010 an oversized tp. See the package docstring
for how a rule is declared.
"""

from __future__ import annotations

import math

from shapewise.check.rules.base import (
    HEAD_DIM_MIN_MULTIPLE,
    HIDDEN_MULTIPLE,
    VOCAB_MULTIPLE,
    Change,
    CheckContext,
    Estimate,
    Finding,
    Rule,
    make_finding,
    register,
    round_up,
    tp_problems,
)
from shapewise.check.rules.heads import head_options
from shapewise.model.memory import GIB, gpu_capacity_bytes, memory_fit


# --------------------------------------------------------------- SW005 heads per rank
def _heads_fix(ctx: CheckContext) -> int | None:
    shape, t = ctx.shape, ctx.tp
    assert shape is not None
    a = shape.num_attention_heads
    options = (head_options(shape, t) or
               head_options(shape, t, min_multiple=HEAD_DIM_MIN_MULTIPLE))
    return min(options, key=lambda o: (abs(o[0] - a), o[0]))[0] if options else None


def _heads_message(ctx: CheckContext, fix: int | None) -> str:
    shape, t = ctx.shape, ctx.tp
    assert shape is not None
    a, b = shape.num_attention_heads, ctx.micro_batch
    divisors = [x for x in range(t - 1, 0, -1) if not tp_problems(shape, x)]
    alt = f"; or tp {divisors[0]}" if divisors else ""
    return (f"num_attention_heads {a} is not divisible by tp {t} ((b·a)/t = "
            f"{b * a}/{t} is not an integer): tensor parallelism needs whole heads on "
            f"each rank and the training fails at startup; use "
            + (f"{fix} heads" if fix else "another head count") + alt)


heads_per_rank = register(Rule(
    id="SW005", name="heads-per-rank", field="num_attention_heads", severity="error",
    doc="""(b·a)/t an integer: whole attention heads on every tensor-parallel rank.

    Why: the attention BMMs of a rank have batch b·a/t (co-design rule 4), and Megatron-style
    tensor parallelism gives each rank a/t whole heads: a head count that t does not divide
    fails at startup. Fix: the nearest head count that t divides (head dim a multiple of 64
    if possible), or a tp that divides a. Severity: error.
    """,
    applies=lambda c: (c.shape is not None and c.tp > 1
                       and c.shape.num_attention_heads % c.tp != 0),
    fix=_heads_fix, message=_heads_message,
    detail=lambda c, fix, new: "no speedup: the current shape cannot run at this tp",
))


# ---------------------------------------------------------- SW006 tensor-parallel splits
def _tp_divisibility(ctx: CheckContext) -> list[Finding]:
    """SW006, as its entry below says."""
    shape, t = ctx.shape, ctx.tp
    if shape is None or t <= 1:
        return []
    out = []
    for name, value in tp_problems(shape, t):
        if name == "num_attention_heads":
            continue  # SW005
        fix: int | None
        if name == "hidden_size":
            unit = math.lcm(t, shape.num_attention_heads, HIDDEN_MULTIPLE)
            fix = round_up(value, unit)
        elif name == "num_key_value_heads":
            a = shape.num_attention_heads
            if value == a:
                continue  # multi-head attention: SW005 says it
            options = [x for x in range(t, a + 1, t) if a % x == 0]
            fix = min(options, key=lambda x: (abs(x - value), x)) if options else None
        else:  # intermediate_size, vocab_size
            fix = round_up(value, VOCAB_MULTIPLE * t)
        crash = {"vocab_size": "the vocab-parallel embedding and logits",
                 "intermediate_size": "the column-parallel MLP",
                 "num_key_value_heads": "the K/V projections (whole K/V groups per rank)",
                 "hidden_size": "the row-parallel projections"}[name]
        out.append(make_finding(
            ctx, "SW006", severity="error",
            message=(f"{name} {value} is not divisible by tp {t}: {crash} cannot split "
                     f"evenly and the training fails; use "
                     + (f"{fix}" if fix is not None else f"a tp that divides {value}")),
            field=name, value=value, fix=fix,
            detail="no speedup: the current shape cannot run at this tp"))
    return out


tp_divisibility = register(Rule(
    id="SW006", name="tp-divisibility", field="tp", find=_tp_divisibility,
    doc="""h/t, KV heads/t, FFN/t and vocab/t integers (a/t is SW005).

    Why: Megatron-style tensor parallelism splits the QKV and MLP-up weights by columns, the
    output projection and MLP-down by rows, and the vocabulary across ranks; a size that t
    does not divide crashes the training (ColossalAI #6167, vLLM #440, Megatron-LM #1754 for
    the vocabulary). Fix: the nearest size t divides (vocabulary and FFN: the next multiple
    of 64·t, so each rank's slice stays aligned). Severity: error.
    """,
))

# ------------------------------------------------------------ SW007 pipeline layers
def _layers_fix(ctx: CheckContext) -> int:
    L, p = ctx.value_of("num_hidden_layers"), ctx.pipeline_stages
    lo, hi = (L // p) * p, round_up(L, p)
    return lo if lo > 0 and L - lo <= hi - L else hi


def _layers_message(ctx: CheckContext, fix: int) -> str:
    L, p = ctx.value_of("num_hidden_layers"), ctx.pipeline_stages
    divisors = [x for x in range(2, min(L, 64) + 1) if L % x == 0]
    return (f"num_hidden_layers {L} is not divisible by {p} pipeline stages: the "
            f"stages cannot hold equal layers; use {fix} layers"
            + (f" or {', '.join(map(str, divisors[:6]))} stages" if divisors else ""))


pipeline_layers = register(Rule(
    id="SW007", name="pipeline-layers", field="num_hidden_layers", severity="error",
    doc="""Layers divisible by the pipeline stages.

    Why: pipeline parallelism gives each stage L/p layers (Megatron-LM requires it unless
    told otherwise); an uneven split fails or leaves the slowest stage setting the pace for
    all. Fix: the nearest layer count p divides. Severity: error.
    """,
    applies=lambda c: (c.shape is not None and c.pipeline_stages > 1
                       and c.shape.num_hidden_layers % c.pipeline_stages != 0),
    fix=_layers_fix, message=_layers_message,
))


# ---------------------------------------------------------------- SW010 tp oversized
def _smaller_tp(ctx: CheckContext) -> int | None:
    """The smallest tp that divides the current one, splits the shape, and fits the step
    in the GPU's memory by the test ``plan`` uses (``Estimate.fits``: the peak per GPU, the
    allocator allowance included, against :func:`shapewise.model.memory.gpu_capacity_bytes`),
    so that check and plan never disagree on whether a tp fits."""
    shape, t = ctx.shape, ctx.tp
    assert shape is not None
    for t2 in range(1, t):
        if t % t2 or tp_problems(shape, t2):
            continue
        new = ctx.price(tp=t2)
        if new is not None and new.fits:
            return t2
    return None


def _at_tp(ctx: CheckContext, t2: int) -> Estimate:
    new = ctx.price(tp=t2)  # priced (and cached) by _smaller_tp
    assert new is not None
    return new


def _tp_message(ctx: CheckContext, fix: int) -> str:
    fit = memory_fit(_at_tp(ctx, fix).memory_bytes, ctx.gpu)
    return (f"tp {ctx.tp} is more than memory needs: at tp {fix} a step needs "
            f"{fit.describe()} on {ctx.gpu.name}, and each GPU does more with fewer "
            "all-reduces")


def _tp_detail(ctx: CheckContext, fix: int, new: Estimate | None) -> str:
    est, new = ctx.estimate, _at_tp(ctx, fix)
    assert est is not None
    return (f"memory per GPU {est.memory_bytes / GIB:.1f} GiB at tp {ctx.tp}, "
            f"{new.memory_bytes / GIB:.1f} GiB at tp {fix} (of "
            f"{gpu_capacity_bytes(ctx.gpu) / GIB:.1f} GiB, as plan counts it); "
            f"tokens/s per GPU {est.tokens_per_s:,.0f} → {new.tokens_per_s:,.0f}")


tp_oversized = register(Rule(
    id="SW010", name="tp-oversized", field="tp",
    doc="""Tensor-parallel size no larger than memory needs.

    Why: every tensor-parallel rank adds two all-reduces per layer and shrinks each GEMM
    by t (co-design rule 5: t as small as possible). Flagged when a smaller t that splits the
    shape still fits the step in the GPU's memory by the same test as ``plan`` (the peak per
    GPU of weights, gradients, master weights, Adam states and activations, plus the
    allocator allowance of 5% + 1 GiB, within the catalog's GB counted as GiB;
    :func:`shapewise.model.memory.memory_fit`); no ZeRO, no pipeline: skipped when pipeline
    stages > 1. Fix: that t. Speedup: tokens/s per GPU.
    """,
    applies=lambda c: (c.shape is not None and c.tp > 1 and c.estimate is not None
                       and c.pipeline_stages == 1 and _smaller_tp(c) is not None),
    fix=_smaller_tp, change=lambda c, fix: Change(tp=fix), basis="tokens-per-gpu",
    only_if_faster=True, message=_tp_message, detail=_tp_detail,
))
