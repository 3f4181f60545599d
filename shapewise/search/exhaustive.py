"""The reference search: price every shape of a (small) space and keep the best.

It walks exactly the space :func:`shapewise.recommend_shape` samples from, with the same
objective, so tests can check how close the Optuna search lands to the true optimum.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU
from shapewise.model.params import count_params
from shapewise.model.run_defaults import default_seq_len
from shapewise.model.shape import ModelShape
from shapewise.search.constraints import Constraints
from shapewise.search.ffn import with_tuned_ffn
from shapewise.search.space import Problem, SearchSpace, enumerate_space, make_shape
from shapewise.step import estimate

MAX_POINTS = 200_000


@dataclass(frozen=True, slots=True)
class ExhaustiveResult:
    best: ModelShape
    score: float
    """tokens/s per GPU × params / budget, as recommend_shape's objective"""
    tokens_per_s: float
    """the objective's tokens/s per GPU (recommend's shape_tokens_per_s)"""
    evaluated: int


def exhaustive_search(
    *, params: float, gpu: str | GPU | None = None, seq_len: int | None = None,
    vocab_size: int | None = None, arch: str = "gpt", tp: int = 1, micro_batch: int = 1,
    tolerance: float = 0.05, dtype: str = "bf16", recompute: bool = False,
    space: SearchSpace | None = None, profile: str | None = None, image_size: int = 224,
    patch_size: int = 16, num_labels: int = 1000, constraints: Constraints | None = None,
) -> ExhaustiveResult:
    """Evaluate every feasible shape of ``space`` (default: recommend_shape's); refuse
    spaces over 200,000 points. Arguments as :func:`shapewise.recommend_shape`'s."""
    from shapewise.search.recommend import (
        _score,
        _validate,
        default_space,
        resolve_target,
        shape_tokens_per_s,
    )

    if seq_len is None:  # the one default every command shares (model.run_defaults)
        seq_len = default_seq_len()[0]
    _validate(params, tolerance, tp, micro_batch, seq_len, vocab_size, arch)
    g, dt = resolve_target(gpu, profile, dtype)
    c = constraints or Constraints()
    if vocab_size is not None:
        c = replace(c, vocab_size=int(vocab_size))
    sp = space or default_space(arch, float(params), int(tp), c)
    vocab = c.vocab(arch)[0] or 1
    pb = Problem(float(params), float(tolerance), arch, int(vocab), int(seq_len),  # type: ignore[arg-type]
                 int(tp), image_size, patch_size, num_labels)
    seq = make_shape(pb, 768, 64, 1, 3072, 1, 1).seq_len if arch == "vit" else int(seq_len)
    sp = with_tuned_ffn(sp, pb, gpu=g, dtype=dt, tokens=int(micro_batch) * seq)
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
                           seq_len=None if arch == "vit" else seq_len, tp=tp, dtype=dt,
                           recompute=recompute)
        except InputError:
            continue
        score = _score(est, count_params(shape), params)
        if best is None or score > best[0]:
            best = (score, shape, shape_tokens_per_s(est))
    if best is None:
        raise InputError(f"params: no shape in the space meets {params:.3g} ± "
                         f"{tolerance * 100:.3g}%")
    return ExhaustiveResult(best[1], best[0], best[2], n)
