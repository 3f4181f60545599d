"""The reference search: price every shape of a (small) space and keep the best.

It walks exactly the space :func:`shapewise.recommend_shape` samples from, with the same
objective, so tests can check how close the Optuna search lands to the true optimum.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from shapewise.errors import InputError
from shapewise.model.params import count_params
from shapewise.model.shape import ModelShape
from shapewise.plan import Target, make_setup
from shapewise.search.constraints import Constraints
from shapewise.search.ffn import with_tuned_ffn
from shapewise.search.space import Problem, SearchSpace, enumerate_space, make_shape
from shapewise.search.target import priced_at, search_target
from shapewise.step import price_step

MAX_POINTS = 200_000
#: the target fields exhaustive_search takes one by one instead of ``target=``
TARGET_KEYWORDS = ("gpu", "profile", "dtype", "seq_len", "micro_batch", "tp", "recompute")


@dataclass(frozen=True, slots=True)
class ExhaustiveResult:
    best: ModelShape
    score: float
    """tokens/s per GPU × params / budget, as recommend_shape's objective"""
    tokens_per_s: float
    """the objective's tokens/s per GPU (recommend's shape_tokens_per_s)"""
    evaluated: int


def exhaustive_search(
    *, params: float, target: Target | None = None, arch: str = "gpt",
    vocab_size: int | None = None, tolerance: float = 0.05,
    constraints: Constraints | None = None, space: SearchSpace | None = None,
    image_size: int = 224, patch_size: int = 16, num_labels: int = 1000, **fields: Any,
) -> ExhaustiveResult:
    """Evaluate every feasible shape of ``space`` (default: recommend_shape's); refuse
    spaces over 200,000 points. Arguments as :func:`shapewise.recommend_shape`'s (``target``
    or its fields one by one)."""
    from shapewise.search.recommend import (
        _score,
        _validate,
        default_space,
        shape_tokens_per_s,
    )

    _validate(params, tolerance, vocab_size, arch)
    t = search_target(target, fields, by="exhaustive_search", takes=TARGET_KEYWORDS,
                      prices=("recompute",))
    c = constraints or Constraints()
    if vocab_size is not None:
        c = replace(c, vocab_size=int(vocab_size))
    sp = space or default_space(arch, float(params), t.tp, c)
    vocab = c.vocab(arch)[0] or 1
    pb = Problem(float(params), float(tolerance), arch, int(vocab), t.seq_len,  # type: ignore[arg-type]
                 t.tp, image_size, patch_size, num_labels)
    seq = make_shape(pb, 768, 64, 1, 3072, 1, 1).seq_len if arch == "vit" else t.seq_len
    at = priced_at(t, seq)  # type: ignore[arg-type]
    sp = with_tuned_ffn(sp, pb, gpu=t.gpu, dtype=t.dtype, tokens=t.micro_batch * seq)  # type: ignore[operator]
    best: tuple[float, ModelShape, float] | None = None
    n = 0
    for h, d, r, f, L, pad in enumerate_space(pb, sp):
        n += 1
        if n > MAX_POINTS:
            raise InputError(f"space: more than {MAX_POINTS} shapes; narrow it for an "
                             "exhaustive search")
        shape = make_shape(pb, h, d, r, f, L, pad)
        try:
            est = price_step(shape, make_setup(shape, target=at(shape)))
        except InputError:
            continue
        score = _score(est, count_params(shape), params)
        if best is None or score > best[0]:
            best = (score, shape, shape_tokens_per_s(est))
    if best is None:
        raise InputError(f"params: no shape in the space meets {params:.3g} ± "
                         f"{tolerance * 100:.3g}%")
    return ExhaustiveResult(best[1], best[0], best[2], n)
