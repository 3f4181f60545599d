"""The reference search: price every shape of a (small) space and keep the best.

It walks exactly the space :func:`shapewise.recommend_shape` samples from, with the same
objective, so tests can check how close the Optuna search lands to the true optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, get_gpu
from shapewise.model.params import count_params
from shapewise.model.shape import ModelShape
from shapewise.search.space import Problem, SearchSpace, enumerate_space, make_shape
from shapewise.step import estimate

MAX_POINTS = 200_000


@dataclass(frozen=True, slots=True)
class ExhaustiveResult:
    best: ModelShape
    score: float
    """tokens/s per GPU × params / budget, as recommend_shape's objective"""
    tokens_per_s: float
    evaluated: int


def exhaustive_search(
    *, params: float, gpu: str | GPU, seq_len: int = 2048, vocab_size: int = 50257,
    arch: str = "gpt", tp: int = 1, micro_batch: int = 1, tolerance: float = 0.05,
    dtype: str = "bf16", space: SearchSpace | None = None,
) -> ExhaustiveResult:
    """Evaluate every feasible shape of ``space``; refuse spaces over 200,000 points."""
    g = get_gpu(gpu)
    sp = space or SearchSpace(arch=arch)  # type: ignore[arg-type]
    pb = Problem(float(params), float(tolerance), arch, vocab_size, seq_len, tp)  # type: ignore[arg-type]
    best: tuple[float, ModelShape, float] | None = None
    n = 0
    for h, d, r, f, L, pad in enumerate_space(pb, sp):
        n += 1
        if n > MAX_POINTS:
            raise InputError(f"space: more than {MAX_POINTS} shapes; narrow it for an "
                             "exhaustive search")
        shape = make_shape(pb, h, d, r, f, L, pad)
        try:
            est = estimate(shape, gpu=g, micro_batch=micro_batch,
                           seq_len=None if arch == "vit" else seq_len, tp=tp, dtype=dtype)
        except InputError:
            continue
        score = est.tokens_per_s * count_params(shape) / params
        if best is None or score > best[0]:
            best = (score, shape, est.tokens_per_s)
    if best is None:
        raise InputError(f"params: no shape in the space meets {params:.3g} ± {tolerance:.0%}")
    return ExhaustiveResult(best[1], best[0], best[2], n)
