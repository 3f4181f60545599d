"""The FFN size at a width: the arch's rule, moved only when the cost model says it must be.

The rule (:meth:`SearchSpace.ffn_for`: 4h for GELU, 8/3·h rounded up to 256 for SwiGLU) is
kept unless another multiple of 64·tp within ±5% of it runs the MLP GEMMs at least 5% more
TFLOP/s; then the nearest size within 1% of the fastest is used. These are the thresholds of
``shapewise check``'s ffn-size rule (SW008: FFN_WINDOW, FFN_MIN_GAIN, FFN_TOLERANCE), so a
recommended shape never draws that warning at the settings it was searched for; a test holds
the two sets of constants equal. The FFN stays one value per width, not a searched
dimension: the alternatives differ in real decisions.
"""

from __future__ import annotations

from dataclasses import replace

from shapewise.cost.price import price
from shapewise.hardware.catalog import GPU
from shapewise.ops import Gemm
from shapewise.search.space import Problem, SearchSpace, hidden_sizes

#: sizes within this fraction of the rule's are priced
FFN_WINDOW = 0.05
#: the rule's size is replaced only when another runs this much more TFLOP/s
FFN_MIN_GAIN = 1.05
#: among sizes within this of the fastest, the nearest to the rule's wins
FFN_TOLERANCE = 0.01
#: at most this many sizes priced per width (evenly thinned)
MAX_CANDIDATES = 48


def _triple(m: int, n: int, k: int, gpu: GPU, dtype: str) -> float:
    fwd = Gemm(m=m, n=n, k=k, dtype=dtype)
    return sum(price(g, gpu) for g in (fwd, *fwd.backward()))


def _per_flop(f: int, *, h: int, swiglu: bool, tokens: int, tp: int, gpu: GPU,
              dtype: str) -> float:
    """Seconds of one layer's MLP GEMMs (forward and backward) per unit of FFN width."""
    up = 2 * f // tp if swiglu else f // tp
    return (_triple(tokens, up, h, gpu, dtype) + _triple(tokens, h, f // tp, gpu, dtype)) / f


def tuned_ffn(space: SearchSpace, h: int, *, gpu: GPU, dtype: str, tokens: int, tp: int) -> int:
    """The FFN size for width h (module docstring)."""
    f = replace(space, ffn_by_width={}).ffn_for(h)
    if "intermediate_size" in space.fixed or f % tp:
        return f
    unit = 64 * tp
    lo = max(unit, -(-int(f * (1 - FFN_WINDOW)) // unit) * unit)
    hi = max(lo, int(f * (1 + FFN_WINDOW)) // unit * unit)
    stride = max(1, (hi - lo) // unit // MAX_CANDIDATES + 1) * unit
    cands = set(range(lo, hi + 1, stride)) | {-(-f // unit) * unit}
    if f >= unit:
        cands.add(f // unit * unit)
    kw = dict(h=h, swiglu=space.arch == "llama", tokens=tokens, tp=tp, gpu=gpu, dtype=dtype)
    scores = {c: _per_flop(c, **kw) for c in cands}  # type: ignore[arg-type]
    base = _per_flop(f, **kw)  # type: ignore[arg-type]
    fastest = min(scores.values())
    best = min((c for c in scores if scores[c] <= fastest * (1 + FFN_TOLERANCE)),
               key=lambda c: (abs(c - f), c))
    if f % unit == 0 and (best == f or base / scores[best] < FFN_MIN_GAIN):
        return f
    return best


def with_tuned_ffn(space: SearchSpace, pb: Problem, *, gpu: GPU, dtype: str,
                   tokens: int) -> SearchSpace:
    """``space`` with the FFN of every width it can reach chosen by :func:`tuned_ffn`."""
    if "intermediate_size" in space.fixed:
        return space
    sizes = {h: tuned_ffn(space, h, gpu=gpu, dtype=dtype, tokens=tokens, tp=pb.tp)
             for h in hidden_sizes(pb, space)}
    return replace(space, ffn_by_width=sizes)
