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

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from shapewise.errors import InputError
from shapewise.search.plans import PlanFit

#: distinct shapes (from the top of the per-GPU ranking) priced under plans
PLANNED_MAX = 6


def best_plan(shape: Any, *, gpu: Any, n_gpus: int, global_batch: int, seq_len: int,
              dtype: str, recipe: Any = None) -> Any | None:
    """The fastest fitting plan's estimate of ``shape`` on ``n_gpus`` GPUs (None: none fits)."""
    from shapewise.planner import plan_training

    try:
        return plan_training(shape, gpu=gpu, n_gpus=n_gpus, global_batch=global_batch,
                             seq_len=seq_len, dtype=dtype, recipe=recipe, top=1)[0]
    except InputError:
        return None


def planned(cands: Iterable[Any], *, gpu: Any, n_gpus: int, global_batch: int, seq_len: int,
            dtype: str, budget: float, limit: int = PLANNED_MAX, recipe: Any = None
            ) -> tuple[list[Any], int]:
    """The candidates that fit at some plan, each with its best plan's estimate and score,
    fastest first; and how many of those tried fit no plan."""
    out, dropped = [], 0
    for i, c in enumerate(cands):
        if i >= limit:
            break
        est = best_plan(c.shape, gpu=gpu, n_gpus=n_gpus, global_batch=global_batch,
                        seq_len=seq_len, dtype=dtype, recipe=recipe)
        if est is None:
            dropped += 1
            continue
        fit = PlanFit((), f"fastest plan on {n_gpus} GPUs: {est.plan.label()} "
                          f"({est.memory_bytes / 2**30:.0f} GiB/GPU)", plan=est.plan)
        out.append(replace(c, estimate=est, score=est.tokens_per_s * c.params / budget,
                           plan=fit, tokens_per_s=est.tokens_per_s))
    out.sort(key=lambda c: -c.score)
    return out, dropped
