"""``plan_training``: every parallel plan of a model on ``n_gpus`` GPUs, the feasible ones
ranked by tokens/s per GPU.

The search is exhaustive over a small grid, as a practitioner would lay it out:

* tp: the divisors of ``n_gpus`` that fit in one node and split heads, KV heads, FFN and
  vocabulary (Megatron keeps TP inside NVLink/xGMI); sequence parallelism on when tp > 1;
* pp: the divisors of what is left, at most the layers; 1F1B, and interleaved (v = 2)
  when the layers split into pp·2 equal chunks;
* cp: 1, and 2–8 for sequences of 8192 tokens or more;
* dp: what is left; ZeRO 0, 1, 2 and FSDP full shard (and hybrid shard past one node);
* micro-batch: the powers of two that divide the sequences per data-parallel rank;
* recompute: none or full.

Memory is priced first (cheap); a plan that does not fit is dropped before its step is
priced. Everything is validated once: the shape, hardware and batch up front, each grid
point by :class:`~shapewise.plan.Plan` and :func:`~shapewise.plan.make_setup`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from shapewise.errors import InputError
from shapewise.plan import Plan, Target, make_setup
from shapewise.step import Estimate, price_step
from shapewise.step_ops import Pricer
from shapewise.step_params import step_params


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _tp_ok(shape: Any, tp: int) -> bool:
    from shapewise.model.params import check_tp

    try:
        check_tp(shape, tp)
    except InputError:
        return False
    return True


def candidate_plans(shape: Any, *, n_gpus: int, global_batch: int, seq_len: int,
                    gpus_per_node: int = 8, micro_batches: tuple[int, ...] | None = None,
                    recompute: tuple[str, ...] = ("none", "full")) -> list[Plan]:
    """The grid of the module doc (each point a valid Plan for ``shape``)."""
    L = shape.num_hidden_layers
    out: list[Plan] = []
    for tp in _divisors(n_gpus):
        if tp > gpus_per_node or not _tp_ok(shape, tp):
            continue
        for pp in _divisors(n_gpus // tp):
            if pp > L:
                continue
            cps = [1] + ([c for c in (2, 4, 8) if seq_len >= 8192 and tp * c <= gpus_per_node
                          and seq_len % (2 * c) == 0] if shape.arch != "vit" else [])
            for cp in cps:
                if (n_gpus // tp // pp) % cp:
                    continue
                dp = n_gpus // (tp * pp * cp)
                if global_batch % dp:
                    continue
                per_rank = global_batch // dp
                mbs = micro_batches or tuple(m for m in (1, 2, 4, 8, 16, 32) if per_rank % m == 0)
                shards: list[dict[str, Any]] = [{}]
                if dp * cp > 1:
                    shards += [{"zero": 1}, {"zero": 2}, {"fsdp": "full"}]
                    if dp * cp * tp > gpus_per_node:
                        shards.append({"fsdp": "hybrid"})
                vs = [1] + ([2] if pp > 1 and L % (pp * 2) == 0 else [])
                for mb in mbs:
                    if per_rank % mb:
                        continue
                    m = per_rank // mb
                    for v in vs:
                        if v > 1 and m % pp:
                            continue
                        for sh in shards:
                            for rc in recompute:
                                out.append(Plan(dp=dp, tp=tp, pp=pp, cp=cp, virtual_stages=v,
                                                sequence_parallel=tp > 1, micro_batch=mb,
                                                global_batch=global_batch, recompute=rc,
                                                **sh))
    return out


def plan_training(shape: Any, *, gpu: Any = None, n_gpus: int, global_batch: int,
                  seq_len: int | None = None, dtype: str = "bf16", top: int | None = None,
                  micro_batches: tuple[int, ...] | None = None,
                  recompute: tuple[str, ...] = ("none", "full"), fused_loss: bool = False,
                  attention_backend: str | None = None,
                  plans: list[Plan] | None = None, recipe: Any = None, ep: int = 1,
                  capacity_factor: float | None = None,
                  imbalance: float = 1.0, target: Target | None = None) -> list[Estimate]:
    """The feasible plans of ``shape`` on ``n_gpus`` GPUs, fastest (tokens/s/GPU) first.

    ``gpu`` is a GPU or system name or object; ``global_batch`` is in sequences. ``plans``
    replaces the grid (each must use ``n_gpus`` GPUs). Each Estimate carries its plan, its
    per-category breakdown (``categories``, ``exposed_comm``) and its memory per stage.
    Raises InputError when no plan fits. ``recipe`` (an fp8 recipe), ``ep`` (the
    expert-parallel size of a mixture of experts: only plans whose dp·cp it divides),
    ``capacity_factor`` and ``imbalance`` are as in :func:`shapewise.estimate`. ``target``
    (:func:`shapewise.make_target`) replaces ``gpu``, ``seq_len``, ``dtype``,
    ``fused_loss``, ``attention_backend``, ``recipe``, ``capacity_factor`` and
    ``imbalance``; its plan is not used (the grid is searched).

    >>> from shapewise.model.presets import get_preset
    >>> best = plan_training(get_preset("llama-2-7b"), gpu="h100", n_gpus=16,
    ...                      global_batch=256, seq_len=4096, top=1)[0]
    >>> best.fits and best.plan.n_gpus == 16
    True
    """
    from shapewise.model.memory import memory_fit, plan_memory

    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise InputError(f"n_gpus: must be a positive integer, got {n_gpus!r}")
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise InputError(f"global_batch: must be a positive integer (sequences), "
                         f"got {global_batch!r}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise InputError(f"top: must be a positive integer, got {top!r}")
    for rc in recompute:
        if rc not in ("none", "selective", "full"):
            raise InputError(f"recompute: {rc!r} is not 'none', 'selective' or 'full'")
    # validate shape, hardware, dtype and seq_len once, on the one-GPU plan
    moe_kw = {"recipe": recipe, "capacity_factor": capacity_factor, "imbalance": imbalance}
    # (a target built by the caller's entry point: its plan is the grid's to choose, and a
    # target field also given here is refused, naming it)
    base = make_setup(shape, target=target, plan=Plan(), gpu=gpu, seq_len=seq_len,
                      dtype=dtype, fused_loss=fused_loss, attention_backend=attention_backend,
                      **moe_kw)
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
        raise InputError(f"ep: must be a positive integer, got {ep!r}")
    given = plans is not None
    if plans is None:
        plans = candidate_plans(shape, n_gpus=n_gpus, global_batch=global_batch,
                                seq_len=base.seq_len, gpus_per_node=base.gpus_per_node,
                                micro_batches=micro_batches, recompute=recompute)
        if ep > 1:  # expert parallelism is taken from the data-parallel ranks
            plans = [dataclasses.replace(p, ep=ep) for p in plans if (p.dp * p.cp) % ep == 0]
        if not plans:
            raise InputError(f"global_batch: no plan of {n_gpus} GPUs divides {global_batch} "
                             f"sequences into whole micro-batches per data-parallel rank"
                             + (f" with dp·cp a multiple of ep {ep}" if ep > 1 else ""))
    pricer = Pricer(base, step_params(base.gpu))
    out: list[Estimate] = []
    for plan in plans:
        if plan.n_gpus != n_gpus:
            raise InputError(f"plan: {plan.label()} uses {plan.n_gpus} GPUs, not n_gpus = "
                             f"{n_gpus}")
        # the target is validated once (base); a given plan or an expert split is checked
        # against the model, the grid's own plans are valid by construction
        setup = (make_setup(shape, target=base.target, plan=plan)
                 if given or plan.ep > 1 else dataclasses.replace(base, plan=plan))
        if not memory_fit(max(plan_memory(shape, setup, i)["total"]
                              for i in _stages_to_check(plan)), base.gpu).fits:
            continue
        pricer.setup = setup
        out.append(price_step(shape, setup, _pricer=pricer))
    feasible = [e for e in out if e.fits]
    if not feasible:
        raise InputError(f"n_gpus: no plan of {shape.name or 'this model'} fits on {n_gpus} x "
                         f"{base.gpu.name} at global batch {global_batch}, seq {base.seq_len}")
    feasible.sort(key=lambda e: -e.tokens_per_s)
    return feasible[:top] if top else feasible


def _stages_to_check(plan: Plan) -> list[int]:
    # the first stage holds the most micro-batches in flight, the last the logits
    return sorted({0, plan.pp - 1})
