"""The search with a cluster: each candidate priced under its fastest training plan.

With ``n_gpus`` and a global batch, recommend_shape keeps only shapes that fit at some plan
of that many GPUs and ranks them by tokens/s per GPU under their fastest plan, as
:func:`shapewise.planner.plan_training` finds it (data, tensor, pipeline and context
parallelism, ZeRO/FSDP, recompute, micro-batch; memory per stage). The baselines are priced
the same way, so the gains compare plan against plan. plan_training prices a grid of plans
per shape (about a second each), so only the best ``PLANNED_MAX`` distinct shapes of the
single-GPU ranking are planned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from shapewise.errors import InputError
from shapewise.plan import Target
from shapewise.search.plans import PlanFit

#: distinct shapes (from the top of the per-GPU ranking) priced under plans
PLANNED_MAX = 6


def best_plan(shape: Any, target: Target) -> Any | None:
    """The fastest fitting plan's estimate of ``shape`` on the target's cluster (``n_gpus``
    GPUs, ``global_batch`` sequences per step); None: none fits."""
    from shapewise.planner import plan_training

    try:
        return plan_training(shape, target=target, n_gpus=target.n_gpus,  # type: ignore[arg-type]
                             global_batch=target.global_batch, top=1)[0]
    except InputError:
        return None


def planned(cands: Iterable[Any], *, at: Callable[[Any], Target], budget: float,
            limit: int = PLANNED_MAX) -> tuple[list[Any], int]:
    """The candidates that fit at some plan of the cluster of their target (``at(shape)``),
    each with its best plan's estimate and score, fastest first; and how many of those tried
    fit no plan."""
    out, dropped = [], 0
    for i, c in enumerate(cands):
        if i >= limit:
            break
        target = at(c.shape)
        est = best_plan(c.shape, target)
        if est is None:
            dropped += 1
            continue
        fit = PlanFit((), f"fastest plan on {target.n_gpus} GPUs: {est.plan.label()} "
                          f"({est.memory_bytes / 2**30:.0f} GiB/GPU)", plan=est.plan)
        out.append(replace(c, estimate=est, score=est.tokens_per_s * c.params / budget,
                           plan=fit, tokens_per_s=est.tokens_per_s))
    out.sort(key=lambda c: -c.score)
    return out, dropped
