"""``recommend_moe_shape()``: mixture-of-experts shapes for a total and an active budget.

A deterministic grid, kept apart from :func:`shapewise.search.recommend.recommend_shape`
(whose Optuna search is for dense shapes). For each width h (multiples of 512, heads of 128,
8 KV heads), depth L (aspect ratio h/L from 32 to 160, as published MoE models span: Qwen3-
30B-A3B 43, DeepSeek-V3 118, Mixtral and OLMoE 128) and top-k, the expert width f_e follows
from the active budget and the expert count E from the total:

    active = L·(attention + router + k·3·h·f_e) + embeddings
    total  = L·(attention + router + E·3·h·f_e) + embeddings

f_e must lie within h/8 and 4h (published experts span 0.29h, DeepSeek-V3's 2048 at 7168,
to 3.5h, Mixtral's 14336 at 4096; without a bound the grid drifts to a few layers of very
wide experts, whose larger GEMMs the model prices faster). It is rounded to a multiple of
128 (the N/K of the grouped-GEMM tiles: whole tiles for the up and down projections) and E
to the nearest of 8, 16, ..., 256 that the expert-parallel
size divides. A candidate is kept when both counts are within ``tolerance`` of their budget;
each is priced by :func:`shapewise.estimate` (grouped GEMMs, routing, all-to-all) and ranked
by tokens/s per GPU normalised to the active budget (``tokens/s · active / budget``: shapes
are compared at equal compute per token).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from shapewise.errors import InputError
from shapewise.model.params import count_params
from shapewise.model.shape import ModelShape
from shapewise.plan import Plan, Target, make_setup
from shapewise.search.target import search_target
from shapewise.step import Estimate, price_step

EXPERT_COUNTS = (8, 16, 32, 64, 128, 256)
TOP_K = (1, 2, 4, 8)
#: grouped-GEMM tile edge the expert width is aligned to
EXPERT_FFN_MULTIPLE = 128
HEAD_DIM = 128
KV_HEADS = 8
WIDTHS = tuple(range(1024, 8192 + 1, 512))
ASPECT = (32, 160)
#: expert width bounds, as multiples of h (see the module docstring)
FFN_RATIO = (1 / 8, 4)


@dataclass(frozen=True, slots=True)
class MoeCandidate:
    """One priced MoE shape."""

    shape: ModelShape
    estimate: Estimate
    total_params: int
    active_params: int
    score: float
    """tokens/s per GPU × active params / active budget"""


def _budget(value: Any, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 1e6 or value > 1e14):
        raise InputError(f"{name}: must be a parameter count between 1e6 and 1e14, "
                         f"got {value!r}")
    return float(value)


#: the fields of a Target the MoE grid takes one by one instead of ``target=``
TARGET_KEYWORDS = ("gpu", "profile", "dtype", "seq_len", "micro_batch", "recipe")


def recommend_moe_shape(*, total_params: float, active_params: float,
                        target: Target | None = None, ep: int = 1, vocab_size: int = 32000,
                        tolerance: float = 0.1, top: int = 5, **fields: Any
                        ) -> list[MoeCandidate]:
    """The ``top`` fastest MoE shapes of ``total_params`` with ``active_params`` per token,
    best first (see the module docstring), priced on ``target`` (or its fields one by one:
    ``gpu``, ``seq_len`` (default 4096), ``micro_batch``, ``dtype``, ``recipe``)."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InputError(f"top: must be a positive integer, got {top!r}")
    return search_moe(total_params=total_params, active_params=active_params, target=target,
                      ep=ep, vocab_size=vocab_size, tolerance=tolerance, **fields)[:top]


def search_moe(*, total_params: float, active_params: float, target: Target | None = None,
               ep: int = 1, vocab_size: int = 32000, tolerance: float = 0.1, **fields: Any
               ) -> list[MoeCandidate]:
    """Every MoE shape of the grid within ``tolerance`` of both budgets, each priced on
    ``target`` (as :func:`recommend_moe_shape`), best first (``recommend_shape(arch='moe')``
    reports how many were priced)."""
    total, active = _budget(total_params, "total_params"), _budget(active_params, "active_params")
    if active >= total:
        raise InputError(f"active_params: {active:.3g} must be below total_params "
                         f"{total:.3g} (a mixture of experts activates a fraction)")
    if (isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real)
            or not 0 < tolerance < 1):
        raise InputError(f"tolerance: must be a fraction in (0, 1), got {tolerance!r}")
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
        raise InputError(f"ep: must be a positive integer, got {ep!r}")
    t = search_target(target, fields, by="search_moe", takes=TARGET_KEYWORDS,
                      prices=("recipe",))
    if t.tp != 1:
        raise InputError(f"tp: the MoE grid is priced at tp 1 with expert parallelism (ep=), "
                         f"got tp={t.tp}")
    # expert-parallel ranks are data-parallel ranks (estimate's ep alone: dp = ep)
    plan = Plan(dp=ep, ep=ep, micro_batch=t.micro_batch)
    found: dict[ModelShape, MoeCandidate] = {}
    for h in WIDTHS:
        a = h // HEAD_DIM
        g = KV_HEADS if a % KV_HEADS == 0 else a
        attn = 2 * h * a * HEAD_DIM + 2 * h * g * HEAD_DIM + 2 * h  # q, o, k, v, norms
        emb = 2 * vocab_size * h
        for L in range(max(2, math.ceil(h / ASPECT[1])), h // ASPECT[0] + 1, 2):
            for k in TOP_K:
                per_expert = (active - emb - L * attn) / (L * k * 3 * h)
                if per_expert < EXPERT_FFN_MULTIPLE:
                    continue
                fe = round(per_expert / EXPERT_FFN_MULTIPLE) * EXPERT_FFN_MULTIPLE
                if not FFN_RATIO[0] * h <= fe <= FFN_RATIO[1] * h:
                    continue
                e_float = (total - emb - L * attn) / (L * 3 * h * fe)
                options = [e for e in EXPERT_COUNTS if e >= 2 * k and e % ep == 0]
                if not options:
                    continue
                e = min(options, key=lambda x: abs(math.log(x / e_float)) if e_float > 0
                        else x)
                _consider(found, h=h, a=a, g=g, L=L, k=k, fe=fe, e=e, vocab=vocab_size,
                          total=total, active=active, tolerance=tolerance, target=t,
                          plan=plan)
    if not found:
        raise InputError(f"total_params: no shape of the grid has {total:.3g} parameters "
                         f"with {active:.3g} active within {tolerance:.0%} (widths "
                         f"{WIDTHS[0]}-{WIDTHS[-1]}, {EXPERT_COUNTS[0]}-{EXPERT_COUNTS[-1]} "
                         f"experts)")
    return sorted(found.values(), key=lambda c: -c.score)


def _consider(found: dict[ModelShape, MoeCandidate], *, h: int, a: int, g: int, L: int,
              k: int, fe: int, e: int, vocab: int, total: float, active: float,
              tolerance: float, target: Target, plan: Plan) -> None:
    shape = ModelShape.llama(hidden_size=h, num_attention_heads=a, num_key_value_heads=g,
                             num_hidden_layers=L, intermediate_size=fe, vocab_size=vocab,
                             max_position_embeddings=max(target.seq_len or 0, 4096),
                             num_experts=e, num_experts_per_tok=k,
                             name=f"moe-h{h}-L{L}-E{e}-top{k}-f{fe}")
    n_total, n_active = count_params(shape), count_params(shape, active=True)
    if abs(n_total / total - 1) > tolerance or abs(n_active / active - 1) > tolerance:
        return
    est = price_step(shape, make_setup(shape, target=target, plan=plan))
    found[shape] = MoeCandidate(shape, est, n_total, n_active,
                                est.tokens_per_s * n_active / active)
