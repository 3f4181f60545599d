"""``recommend_shape(arch='moe')``: the MoE grid (:func:`shapewise.search.moe.search_moe`)
reported as a :class:`~shapewise.search.result.Recommendation`, like a dense search."""

from __future__ import annotations

import math
import numbers
from typing import Any

from shapewise.errors import InputError
from shapewise.plan import Target
from shapewise.search.constraints import Constraints
from shapewise.search.model_error import model_error
from shapewise.search.moe import EXPERT_FFN_MULTIPLE, search_moe
from shapewise.search.result import (
    Candidate,
    Recommendation,
    explain_shape,
)


def recommend_moe(*, params: float, active_params: Any, target: Target, ep: Any,
                  tolerance: float, top_k: Any, constraints: Constraints, seed: int,
                  unsupported: dict[str, Any]) -> Recommendation:
    """recommend_shape(arch='moe'): the MoE grid search on ``target`` (built by
    recommend_shape: its GPU, dtype, sequence length, micro-batch and recipe), as a
    Recommendation."""
    if active_params is None:
        raise InputError("active_params: required with arch='moe' (the parameters each token "
                         "uses; params= is the total)")
    if (isinstance(active_params, bool) or not isinstance(active_params, numbers.Real)
            or not math.isfinite(active_params) or active_params <= 0):
        raise InputError(f"active_params: must be a positive number of parameters, got "
                         f"{active_params!r}")
    if active_params >= params:
        raise InputError(f"active_params: {active_params:.3g} must be below params "
                         f"{params:.3g}, the total (a mixture of experts activates a "
                         "fraction)")
    for name, v in unsupported.items():
        if v is not None:
            raise InputError(f"{name}: not supported with arch='moe' (the MoE grid is priced "
                             "on one GPU with expert parallelism ep=)")
    if target.tp != 1:
        raise InputError(f"tp: arch='moe' is priced at tp 1 with expert parallelism (ep=), "
                         f"got tp={target.tp}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise InputError(f"top_k: must be a positive integer, got {top_k!r}")
    g, dt, rec = target.gpu, target.dtype, target.recipe
    seq_len, micro_batch = target.seq_len, target.micro_batch
    vocab, vocab_note = constraints.vocab("llama")
    found = search_moe(total_params=params, active_params=active_params, target=target,
                       ep=ep, vocab_size=int(vocab), tolerance=float(tolerance))
    top = []
    for m in found[:int(top_k)]:
        s, est = m.shape, m.estimate
        why = (f"{s.num_experts} experts, top-{s.num_experts_per_tok}, expert FFN "
               f"{s.moe_intermediate_size} (a multiple of the {EXPERT_FFN_MULTIPLE}-wide "
               f"grouped-GEMM tile); {m.active_params / 1e9:.2f}B active of "
               f"{m.total_params / 1e9:.2f}B; " + explain_shape(s, est, 1, g))
        top.append(Candidate(s, est, m.total_params, m.score, why,
                             tokens_per_s=est.tokens_per_s))
    err = model_error(g.id, dt)
    notes = []
    if vocab_note:
        notes.append(f"vocabulary {vocab:,}: {vocab_note}")
    if rec is not None:
        notes.append(f"priced under the fp8 recipe {rec.name} (the logits"
                     f"{'' if rec.fp8_attention else ' and attention'} in {dt})")
    notes += [f"MoE grid: ranked by tokens/s per GPU × active params / active budget, the "
              f"whole step of one micro-batch at ep {ep}",
              f"model error on {g.id} {dt}: ±{err.fraction:.1%} ({err.source}); smaller "
              "differences are within model error",
              "no published MoE shapes to compare with (the published table is dense)",
              f"memory is not a filter here: the best holds "
              f"{top[0].estimate.memory_bytes / 2**30:,.0f} GiB per GPU at ep {ep} "
              "(plan_training finds a plan that fits)"]
    return Recommendation(
        best=top[0].shape, estimate=top[0].estimate, candidates=tuple(top), baselines=(),
        model_error=err, budget=float(params), gpu=g.id, n_trials=0, seed=int(seed),
        method="grid", evaluated=len(found), constraints=constraints, notes=tuple(notes),
        inputs={"arch": "moe", "dtype": dt, "seq_len": int(seq_len),
                "micro_batch": int(micro_batch), "tolerance": float(tolerance),
                "active_params": float(active_params), "ep": ep, "vocab_size": vocab,
                "recipe": rec.name if rec is not None else None})
