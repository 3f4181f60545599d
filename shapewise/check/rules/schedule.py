"""Plan rules: what a parallel plan (``shapewise.Plan``) gets wrong about its pipeline and
its memory. They judge ``ctx.plan`` and stay quiet without one.

SW016 layers per virtual stage, SW017 micro-batches per stage, SW018 pipeline bubble,
SW019 a plan that does not fit. (SW012-SW014 are the MoE rules.) See the package docstring
for how a rule is declared.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from shapewise.check.rules.base import (
    CheckContext,
    Finding,
    Rule,
    make_finding,
    register,
    round_up,
)
from shapewise.errors import InputError
from shapewise.model.memory import GIB, memory_fit

#: A 1F1B pipeline idles (p − 1)/v of a micro-batch's stage time at each end of a step:
#: (p − 1)/(v·m + p − 1) of the step. Narayanan et al. 2021 (Megatron-LM, §2.2) keep the
#: bubble small with m ≫ p; above 10% of the step the rule asks for more micro-batches.
BUBBLE_THRESHOLD = 0.10


def _plan(ctx: CheckContext) -> Any:
    return ctx.plan if ctx.shape is not None else None


def _estimate_with(ctx: CheckContext, **changes: Any) -> Any:
    """The step under the context's plan with ``changes`` (None if that plan is invalid)."""
    from shapewise.step import estimate

    try:
        plan = dataclasses.replace(ctx.plan, **changes)
        return estimate(ctx.shape, gpu=ctx.gpu, seq_len=ctx.seq_len, dtype=ctx.dtype,
                        plan=plan)
    except InputError:
        return None


# ------------------------------------------------------- SW016 layers per virtual stage
def _chunks(ctx: CheckContext) -> int:
    return int(ctx.plan.pp * ctx.plan.virtual_stages)


def _virtual_fix(ctx: CheckContext) -> int:
    L, q = ctx.value_of("num_hidden_layers"), _chunks(ctx)
    lo, hi = (L // q) * q, round_up(L, q)
    return lo if lo > 0 and L - lo <= hi - L else hi


layers_per_virtual_stage = register(Rule(
    id="SW016", name="layers-per-virtual-stage", field="num_hidden_layers", severity="error",
    doc="""Layers divisible by pp·v when the pipeline is interleaved (v virtual stages).

    Why: interleaved 1F1B (Narayanan et al. 2021, §2.2) gives each of the pp·v model chunks
    L/(pp·v) layers; Megatron-LM refuses a layer count that pp·v does not divide. (SW007
    judges pp alone.) Fix: the nearest layer count pp·v divides, or fewer virtual stages.
    Severity: error.
    """,
    applies=lambda c: (_plan(c) is not None and c.plan.virtual_stages > 1
                       and c.shape.num_hidden_layers % _chunks(c) != 0),
    fix=_virtual_fix,
    message=lambda c, fix: (
        f"num_hidden_layers {c.shape.num_hidden_layers} is not divisible by pp·v = "
        f"{c.plan.pp}·{c.plan.virtual_stages}: the interleaved chunks cannot hold equal "
        f"layers; use {fix} layers, or fewer virtual stages"),
))


# -------------------------------------------------------- SW017 micro-batches per stage
def _micro_batches(ctx: CheckContext) -> list[Finding]:
    plan = _plan(ctx)
    if plan is None or plan.pp == 1 or plan.grad_accum >= plan.pp:
        return []
    m, p = plan.grad_accum, plan.pp
    fix = plan.micro_batch * plan.dp * p * (2 if plan.virtual_stages > 1 else 1)
    new = _estimate_with(ctx, global_batch=fix)
    est = ctx.estimate
    detail = ""
    if est is not None and new is not None:
        detail = (f"bubble {est.bubble_fraction:.0%} of the step at {m} micro-batches, "
                  f"{new.bubble_fraction:.0%} at {new.plan.grad_accum}")
    return [make_finding(
        ctx, "SW017", severity="warning",
        message=(f"{m} micro-batch{'es' if m > 1 else ''} per step for {p} pipeline stages: "
                 f"the pipeline never fills (1F1B keeps p − 1 stages idle while it fills "
                 f"and drains); use a global batch of {fix} sequences (at least pp "
                 f"micro-batches per data-parallel rank)"),
        field="global_batch", value=plan.global_batch, fix=fix, detail=detail,
        step_speedup=(new.tokens_per_s / est.tokens_per_s
                      if est is not None and new is not None else None),
        basis="tokens-per-gpu")]


micro_batches_per_stage = register(Rule(
    id="SW017", name="micro-batches-per-stage", field="global_batch", find=_micro_batches,
    doc="""At least pp micro-batches per step and data-parallel rank.

    Why: with m < p micro-batches a 1F1B pipeline (Narayanan et al. 2021) never reaches its
    steady state: every stage idles for most of the step. Fix: a global batch of
    micro_batch·dp·pp sequences or more (twice that when interleaved). Severity: warning.
    """,
))


# ---------------------------------------------------------------- SW018 pipeline bubble
def _bubble_fix(ctx: CheckContext) -> int:
    """The smallest global batch whose bubble is at most BUBBLE_THRESHOLD."""
    plan = ctx.plan
    p, v = plan.pp, plan.virtual_stages
    # (p − 1)/(v·m + p − 1) <= θ  <=>  m >= (p − 1)(1 − θ)/(θ·v)
    m = math.ceil((p - 1) * (1 - BUBBLE_THRESHOLD) / (BUBBLE_THRESHOLD * v))
    if v > 1:
        m = round_up(m, p)
    return int(plan.micro_batch * plan.dp * max(m, plan.grad_accum + 1))


def _bubble(ctx: CheckContext) -> list[Finding]:
    plan, est = _plan(ctx), ctx.estimate
    if (plan is None or est is None or plan.pp == 1 or plan.grad_accum < plan.pp
            or est.bubble_fraction <= BUBBLE_THRESHOLD):
        return []
    fix = _bubble_fix(ctx)
    new = _estimate_with(ctx, global_batch=fix)
    alt = ""
    if plan.virtual_stages == 1 and ctx.shape.num_hidden_layers % (2 * plan.pp) == 0 \
            and plan.grad_accum % plan.pp == 0:
        alt = "; or interleave the pipeline (virtual_stages=2)"
    return [make_finding(
        ctx, "SW018", severity="warning",
        message=(f"the pipeline bubble is {est.bubble_fraction:.0%} of the step ({plan.pp} "
                 f"stages, {plan.grad_accum} micro-batches): use a global batch of {fix} "
                 f"sequences{alt}"),
        field="global_batch", value=plan.global_batch, fix=fix,
        detail=(f"bubble {new.bubble_fraction:.0%} at {new.plan.grad_accum} micro-batches"
                if new is not None else ""),
        step_speedup=new.tokens_per_s / est.tokens_per_s if new is not None else None,
        basis="tokens-per-gpu")]


pipeline_bubble = register(Rule(
    id="SW018", name="pipeline-bubble", field="global_batch", find=_bubble,
    doc=f"""A pipeline bubble of at most {BUBBLE_THRESHOLD:.0%} of the step.

    Why: 1F1B idles (p − 1)/v micro-batch stage times at the start and end of each step,
    (p − 1)/(v·m + p − 1) of it (Narayanan et al. 2021, §2.2). Fix: the smallest global
    batch (more micro-batches m) that brings it under {BUBBLE_THRESHOLD:.0%}, or
    interleaving (v = 2). Severity: warning. Speedup: tokens/s per GPU.
    """,
))


# ------------------------------------------------------------- SW019 plan does not fit
_REMEDIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("fsdp='full'", {"fsdp": "full", "zero": 0}),
    ("recompute='full'", {"recompute": "full"}),
    ("fsdp='full', recompute='full'", {"fsdp": "full", "zero": 0, "recompute": "full"}),
)


def _fits_fix(ctx: CheckContext) -> tuple[str | None, Any]:
    plan = ctx.plan
    for label, change in _REMEDIES:
        if "fsdp" in change and plan.shard_group == 1:
            continue
        if all(getattr(plan, k) == v for k, v in change.items()):
            continue
        new = _estimate_with(ctx, **change)
        if new is not None and new.fits:
            return label, new
    return None, None


def _memory(ctx: CheckContext) -> list[Finding]:
    plan, est = _plan(ctx), ctx.estimate
    if plan is None or est is None or est.fits:
        return []
    label, new = _fits_fix(ctx)
    worst = max(range(len(est.stage_memory)), key=lambda i: est.stage_memory[i])
    where = f" (pipeline stage {worst})" if len(est.stage_memory) > 1 else ""
    return [make_finding(
        ctx, "SW019", severity="error",
        message=(f"the plan needs {memory_fit(est.memory_bytes, ctx.gpu).describe()} per "
                 f"GPU{where} on {ctx.gpu.name}: it cannot run; "
                 + (f"use {label} ({new.memory_bytes / GIB:.1f} GiB)" if label else
                    "shard with FSDP/ZeRO, recompute activations, lower the micro-batch or "
                    "add tensor or pipeline stages")),
        field="plan", value=plan.label(), fix=label,
        detail=", ".join(f"{k} {v / GIB:.1f} GiB" for k, v in est.memory.items()
                         if k != "total" and v))]


plan_memory = register(Rule(
    id="SW019", name="plan-memory", field="plan", find=_memory,
    doc="""The plan's peak memory per GPU (the maximum over pipeline stages) fits the GPU.

    Why: weights, gradients and Adam states sharded per the plan, Korthikanti et al.
    activations times the micro-batches each stage holds, the logits and an allocator
    allowance (docs/cost-model.md, "Memory under a plan"): a plan past the GPU's memory
    fails with out-of-memory. Fix: the first of FSDP full shard, full recompute, or both,
    that fits. Severity: error.
    """,
))
