"""The smallest training plan a recommended shape fits in, in one sentence.

A shape that needs 118 GiB per GPU at tp 1 is still the right recommendation for an 80 GB
GPU if FSDP or tensor parallelism brings it under; the user needs to know which. For each
tensor-parallel degree up to the planned one, this asks the plan model's memory
(:func:`shapewise.model.memory.plan_memory`: states sharded by FSDP over the data-parallel
ranks, two gathered layers, activations, logits, the allocator allowance) for the fewest
FSDP ranks that fit, trying full activation recompute only when nothing fits without it.
A plan fits when its peak is at most the GPU's memory (the datasheet GB compared as GiB,
as ``plan_training`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shapewise.errors import InputError
from shapewise.model.memory import GIB, gpu_capacity_bytes, plan_memory
from shapewise.model.params import check_tp
from shapewise.model.run_defaults import default_seq_len
from shapewise.model.shape import ModelShape
from shapewise.plan import Plan, Target, make_setup, target_from

#: FSDP degrees considered (a plan needing more GPUs than this is called infeasible)
MAX_GPUS = 16384


@dataclass(frozen=True, slots=True)
class PlanOption:
    """One way to fit: tensor parallelism t, FSDP over ``fsdp`` ranks, recompute or not."""

    tp: int
    fsdp: int
    """data-parallel ranks the model states are sharded over (1: none)"""
    recompute: bool
    memory_bytes: int
    """per GPU"""

    @property
    def gpus(self) -> int:
        return self.tp * self.fsdp

    def describe(self) -> str:
        parts = []
        if self.fsdp > 1:
            parts.append(f"FSDP over ≥ {self.fsdp} GPUs" if self.tp == 1 else
                         f"tp {self.tp} with FSDP over ≥ {self.fsdp} tp groups "
                         f"({self.gpus} GPUs)")
        elif self.tp > 1:
            parts.append(f"tp {self.tp}")
        else:
            parts.append("one GPU")
        if self.recompute:
            parts.append("activation recompute")
        return " and ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {"tp": self.tp, "fsdp": self.fsdp, "gpus": self.gpus,
                "recompute": self.recompute, "memory_bytes": self.memory_bytes}


@dataclass(frozen=True, slots=True)
class PlanFit:
    """The smallest plans a shape fits in, and the sentence that says so."""

    options: tuple[PlanOption, ...]
    """at most two: FSDP at tp 1, and the smallest TP degree that fits (with FSDP only when
    no TP degree fits alone, and only when it needs fewer GPUs than FSDP at tp 1)"""
    text: str
    plan: Any = None
    """with n_gpus and a global batch: the fastest shapewise.plan.Plan that fits"""

    @property
    def feasible(self) -> bool:
        return bool(self.options) or self.plan is not None

    @property
    def one_gpu(self) -> bool:
        return any(o.gpus == 1 for o in self.options)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"feasible": self.feasible, "text": self.text,
                                  "options": [o.to_dict() for o in self.options]}
        if self.plan is not None:
            out["plan"] = self.plan.to_dict()
        return out


def _tp_degrees(shape: ModelShape, max_tp: int) -> list[int]:
    out = []
    for t in (2**i for i in range(0, 13)):
        if t > max_tp or max_tp % t:
            continue
        try:
            check_tp(shape, t)
        except InputError:
            continue
        out.append(t)
    return out


def _memory(shape: ModelShape, target: Target, *, t: int, n: int, recompute: bool) -> int:
    """Peak bytes per GPU at tp t with the model states sharded over n ranks (FSDP full
    shard when n > 1), from the plan model's memory (shapewise.model.memory.plan_memory);
    the target's fp8 recipe adds its weight copies."""
    plan = Plan(dp=n, tp=t, fsdp="full" if n > 1 else None, micro_batch=target.micro_batch,
                recompute="full" if recompute else "none")
    return int(plan_memory(shape, make_setup(shape, target=target, plan=plan))["total"])


def _min_fsdp(shape: ModelShape, target: Target, *, t: int, recompute: bool
              ) -> PlanOption | None:
    """The fewest FSDP ranks at tp t that fit, or None. Past n = 2 the memory is
    rest + sharded / n, so two evaluations give n; a third checks
    it (integer division can leave it one short)."""
    cap = gpu_capacity_bytes(target.gpu)  # the capacity plan_training and SW010 test
    one = _memory(shape, target, t=t, n=1, recompute=recompute)
    if one <= cap:
        return PlanOption(t, 1, recompute, one)
    m2, m4 = (_memory(shape, target, t=t, n=k, recompute=recompute) for k in (2, 4))
    if m2 <= cap:
        return PlanOption(t, 2, recompute, m2)
    sharded = 4 * (m2 - m4)
    rest = m2 - sharded / 2
    if rest >= cap or sharded <= 0:
        return None
    n = max(3, math.ceil(sharded / (cap - rest)))
    while n * t <= MAX_GPUS:
        m = _memory(shape, target, t=t, n=n, recompute=recompute)
        if m <= cap:
            return PlanOption(t, n, recompute, m)
        n += 1
    return None


#: the target fields smallest_plan takes one by one instead of ``target=``
TARGET_KEYWORDS = ("gpu", "profile", "dtype", "seq_len", "micro_batch", "recompute", "recipe")


def smallest_plan(shape: ModelShape, *, target: Target | None = None, max_tp: int = 8,
                  **fields: Any) -> PlanFit:
    """The smallest FSDP degree (at tp 1) and the smallest TP degree (no FSDP) at which
    ``shape`` fits the target's GPU, trying activation recompute only when neither fits
    without it (or always, when the target recomputes); failing both, the plan with the
    fewest GPUs (tp ≤ ``max_tp``). ``target``, or its fields one by one (``gpu``,
    ``micro_batch``, ``seq_len``, ``dtype``, ``recompute``, ``recipe``)."""
    target = target_from(target, fields, takes=TARGET_KEYWORDS, by="smallest_plan")
    recompute = target.plan.recompute != "none"
    for rc in ((recompute,) if recompute else (False, True)):
        opts = {t: _min_fsdp(shape, target, t=t, recompute=rc)
                for t in _tp_degrees(shape, max_tp)}
        found = [o for o in opts.values() if o is not None]
        if not found:
            continue
        one = next((o for o in found if o.gpus == 1), None)
        if one is not None:
            return PlanFit((one,), f"fits one GPU ({one.memory_bytes / GIB:.0f} GiB"
                           f"{', with activation recompute' if rc else ''})")
        fsdp = opts.get(1)
        # the smallest TP degree that fits unsharded, else the TP plan with fewest GPUs
        tp_only = min((o for o in found if o.fsdp == 1), key=lambda o: o.tp, default=None)
        if tp_only is None:
            tp_only = min((o for o in found if o.tp > 1), key=lambda o: (o.gpus, o.tp),
                          default=None)
            if tp_only is not None and fsdp is not None and tp_only.gpus >= fsdp.gpus:
                tp_only = None
        chosen = [o for o in (fsdp, tp_only) if o is not None]
        text = "needs " + ", or ".join(o.describe() for o in chosen)
        return PlanFit(tuple(chosen), text)
    seq = target.seq_len if target.seq_len is not None else default_seq_len(shape)[0]
    return PlanFit((), f"does not fit {target.gpu.name} at tp ≤ {max_tp} with FSDP and "
                       f"activation recompute (micro-batch {target.micro_batch}, seq {seq})")
