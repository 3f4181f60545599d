"""The sampled search for spaces too large to price whole: an Optuna study, then a polish.

recommend_shape prices every shape of a space of at most EXHAUSTIVE_MAX shapes (the default
constraints always give one). Past that, :func:`optuna_search` runs a seeded TPE study over
(width, head dim, KV ratio, padding), scanning the feasible depths of each trial, and
:func:`polish` prices a coarse grid over every width and searches coordinate by coordinate
around the best shapes. ``evaluate`` and ``depths`` are recommend_shape's cached pricer and
layer ranges.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from shapewise.progress import Progress
from shapewise.search.space import Problem, SearchSpace, head_options, pad_options

if TYPE_CHECKING:  # pragma: no cover
    from shapewise.search.recommend import Candidate

#: depths priced per (width, head layout, padding), evenly spaced over the feasible range
MAX_DEPTHS = 8

#: shapes the coarse grid and the local polish may price after the Optuna study
POLISH_BUDGET = 3000
#: best shapes the polish starts from, and keeps as its frontier
POLISH_SEEDS = 5


def polish(pb: Problem, space: SearchSpace, widths: list[int],
            cache: dict[tuple[int, ...], Candidate | None],
            depths: Any, evaluate: Any) -> None:
    """A coarse grid over every width, then a coordinate search around the best shapes.

    From each of the POLISH_SEEDS best, move one coordinate at a time (width by one or two
    steps, every head dim and KV ratio, every vocabulary padding) and price every feasible
    depth of the result; repeat from the new best until none improves or POLISH_BUDGET
    shapes are priced (benchmarks/bench_search_gap.py measures the gap to the exhaustive
    optimum)."""
    start = len(cache)
    visited: set[tuple[int, ...]] = set()
    pads = pad_options(pb, space)

    def spent() -> bool:
        return len(cache) - start >= POLISH_BUDGET

    def price(h: int, d: int, r: int, pad: int) -> None:
        f = space.ffn_for(h)
        ds = depths(h, d, r, f, pad)  # at most MAX_DEPTHS of them, evenly spaced
        for L in ds[::max(1, math.ceil(len(ds) / MAX_DEPTHS))]:
            if spent():
                return
            evaluate(h, d, r, f, L, pad)

    for h in widths:  # the coarse grid: every width, head dims 64 and 128, every KV ratio
        for d, r in head_options(pb, space, h):
            if d in (64, 128):
                price(h, d, r, max(pads))

    def best_keys() -> list[tuple[int, ...]]:
        ranked = sorted(((k, c) for k, c in cache.items() if c is not None),
                        key=lambda kc: -kc[1].score)
        return [k for k, _ in ranked[:POLISH_SEEDS]]

    frontier = best_keys()
    while frontier and not spent():
        center = frontier.pop(0)
        if center in visited:
            continue
        visited.add(center)
        h, d, r, _, _, pad = center
        for d2, r2 in head_options(pb, space, h):
            price(h, d2, r2, pad)
        for pad2 in pads:
            price(h, d, r, pad2)
        if h in widths:
            i = widths.index(h)
            for h2 in widths[max(0, i - 2):i + 3]:
                opts = head_options(pb, space, h2)
                if h2 == h or not opts:
                    continue
                d2, r2 = min(opts, key=lambda o: (abs(o[0] - d), abs(o[1] - r)))
                price(h2, d2, r2, pad)
        frontier += [k for k in best_keys() if k not in visited]


def optuna_search(pb: Problem, space: SearchSpace, widths: list[int], trials: int, seed: int,
            depths: Any, evaluate: Any, bar: Progress) -> None:
    """The Optuna study over (width, head dim, KV ratio, padding); depth is scanned."""
    import optuna

    pads = pad_options(pb, space)

    def objective(trial: optuna.Trial) -> float:
        h = widths[trial.suggest_int("hidden_index", 0, len(widths) - 1)]
        want_d = trial.suggest_categorical("head_dim", list(space.head_dims))
        want_r = trial.suggest_categorical("kv_ratio", list(space.kv_ratios))
        opts = head_options(pb, space, h)
        d, r = min(opts, key=lambda o: (abs(o[0] - want_d), abs(o[1] - want_r), -o[0]))
        f = space.ffn_for(h)
        pad = trial.suggest_categorical("vocab_multiple", pads)
        ds = depths(h, d, r, f, pad)
        if not ds:
            raise optuna.TrialPruned("no layer count meets the budget at this width")
        cands = [x for L in ds[::max(1, math.ceil(len(ds) / MAX_DEPTHS))]
                 if (x := evaluate(h, d, r, f, L, pad)) is not None]
        if not cands:
            raise optuna.TrialPruned("shape rejected by validation")
        return max(x.score for x in cands)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(40, trials // 3 + 1),
                                         multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for d in (128, 64):
        if d in space.head_dims:
            study.enqueue_trial({"head_dim": d, "vocab_multiple": max(pads),
                                 "kv_ratio": space.kv_ratios[0],
                                 "hidden_index": len(widths) // 2})
    study.optimize(objective, n_trials=trials, callbacks=[lambda s, t: bar.update(1, "")])
