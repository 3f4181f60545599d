"""``recommend_shape()``: the transformer shape that trains fastest for a parameter budget,
within the constraints a practitioner trains under.

**Objective**: predicted training tokens/s per GPU normalised to the budget,
``tokens_per_s · params / budget``, with the tokens/s of the part of the step the shape
decides (:func:`shape_tokens_per_s`: no optimizer update or fixed per-step host time, which
the global batch amortizes; the whole step under a plan when a cluster is given).
Shapes inside the ±tolerance band are compared at equal
model size (training cost is proportional to params × tokens), so the search cannot win by
picking the smallest model the tolerance allows. This objective always prefers wider and
shallower shapes; depth is a quality decision, so the shape is bounded by
:class:`~shapewise.search.constraints.Constraints` (aspect band, head dims, TP-divisible
heads, GQA groups, pipeline stages, the arch's FFN rule, the tokenizer's vocabulary), each
with a documented default.

**Search**: with the default constraints the space holds tens to hundreds of shapes, so
every one is priced (``method='exhaustive'``: the optimum, whatever the seed). A space of
more than EXHAUSTIVE_MAX shapes (constraints relaxed by the user) is searched by an Optuna
study (TPE sampler, seeded: the same seed gives the same answer), then a coarse grid and a
coordinate polish around the best shapes (``method='optuna'``).

**Ranking**: candidates within 0.5% of the best score are a tie at the model's resolution;
among them the shape that keeps more of the alignment rules (multiples of 64) ranks first,
then the depth that more pipeline degrees (2, 4, 8) split evenly.
The top-k are distinct decisions: one per (hidden, head dim, KV heads) at its best depth and
vocabulary padding first; only when the space holds fewer such decisions than top_k, other
depths of them follow (a vocabulary padding of the same shape is never an alternative).
Candidates that fit no training plan (:mod:`.plans`) are dropped.

**Baselines**: the user's own shape (``baseline=``) and the nearest published shapes for the
arch and size (:mod:`.published`), each priced by the same model with the user's vocabulary
and sequence length. A gain smaller than the model's documented error for the GPU
(:mod:`.model_error`) is reported as within model error.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import replace
from typing import Any

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU
from shapewise.model.params import count_params
from shapewise.model.shape import ModelShape, check_limit
from shapewise.plan import Target, make_setup
from shapewise.progress import Progress
from shapewise.search.constraints import Constraints
from shapewise.search.ffn import with_tuned_ffn
from shapewise.search.model_error import ModelError, model_error
from shapewise.search.plans import smallest_plan
from shapewise.search.published import NEAR_FACTOR, nearest_published
from shapewise.search.result import (
    Baseline,
    Candidate,
    Recommendation,
    explain_shape,
)
from shapewise.search.sampler import optuna_search, polish
from shapewise.search.space import (
    Problem,
    SearchSpace,
    empty_reason,
    enumerate_space,
    head_options,
    heads_unit,
    hidden_sizes,
    layer_range,
    make_shape,
    space_from,
)
from shapewise.search.target import priced_at, search_target
from shapewise.step import Estimate, price_step

DEFAULT_TRIALS = 200
#: relative score difference treated as a tie (below the model's resolution)
NEAR_TIE = 0.005
#: spaces up to this many shapes are priced whole (each costs 0.1-0.5 ms)
EXHAUSTIVE_MAX = 4000


def default_space(arch: str, params: float = 1e9, tp: int = 1,
                  constraints: Constraints | None = None) -> SearchSpace:
    """The search space recommend_shape and exhaustive_search use unless given one."""
    return space_from(constraints or Constraints(), arch=arch, params=params, tp=tp)


def _validate(params: Any, tolerance: Any, vocab_size: Any, arch: Any) -> None:
    if isinstance(params, bool) or not isinstance(params, numbers.Real) or not math.isfinite(
            params) or params <= 0:
        raise InputError(f"params: must be a positive number of parameters, got {params!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not (
            0 < tolerance < 1):
        raise InputError(f"tolerance: must be a fraction in (0, 1), got {tolerance!r}")
    if vocab_size is not None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral) or (
                vocab_size <= 0):
            raise InputError(f"vocab_size: must be a positive integer, got {vocab_size!r}")
        check_limit("vocab_size", int(vocab_size))
    if arch not in ("gpt", "llama", "vit", "moe"):
        raise InputError(f"arch: must be 'gpt', 'llama', 'vit' or 'moe', got {arch!r}")


def _rules_kept(shape: ModelShape, tp: int) -> int:
    kept = (shape.hidden_size % 64 == 0) + (shape.head_dim % 64 == 0)
    if shape.arch != "vit" and shape.vocab_size:
        kept += shape.vocab_size % (64 * tp) == 0
    if shape.activation == "swiglu":
        kept += shape.ffn_size % 64 == 0
    return int(kept)


def _stage_splits(layers: int) -> int:
    """How many of the usual pipeline degrees (2, 4, 8) split ``layers`` evenly: among
    near-ties, the depth a team can later pipeline (published depths are 24, 32, 40, 80...)."""
    return sum(layers % p == 0 for p in (2, 4, 8))


def _key3(c: Candidate) -> tuple[int, int, int]:
    s = c.shape
    return (s.hidden_size, s.head_dim, s.kv_heads)


def shape_tokens_per_s(est: Estimate) -> float:
    """Tokens/s per GPU of the part of a step the shape decides: the step without the
    optimizer update and the fixed host time per optimizer step. Both are paid once per
    optimizer step and amortized over the global batch, which the shape does not set;
    priced per micro-batch (estimate's default, no gradient accumulation), a fixed 0.1 s
    would swamp a small model's kernels and tie every shape. With a cluster
    (:mod:`.planned`), the whole step under its plan is used instead."""
    from shapewise.step_params import step_params

    fixed = 0.0
    if est.categories:  # (the host terms are shared by every GPU: step_params(None))
        fixed = est.categories.get("optimizer", 0.0) + step_params(None).step_overhead_s
    t = est.step_time_s - fixed
    return est.tokens_per_s * est.step_time_s / t if t > 0 else est.tokens_per_s


def _score(est: Estimate, n: int, budget: float, *, full_step: bool = False) -> float:
    tps = est.tokens_per_s if full_step else shape_tokens_per_s(est)
    return tps * n / budget


def recommend_shape(
    *, params: float, target: Target | None = None, arch: str = "gpt",
    vocab_size: int | None = None, tolerance: float = 0.05,
    constraints: Constraints | None = None, baseline: ModelShape | None = None,
    n_trials: int | None = None, seed: int = 0, top_k: int = 10, progress: bool = False,
    space: SearchSpace | None = None, image_size: int = 224, patch_size: int = 16,
    num_labels: int = 1000, active_params: float | None = None, ep: int = 1, **fields: Any,
) -> Recommendation:
    """Search the shape with the highest predicted training throughput for ``params``
    within ``constraints`` (default :class:`Constraints()`, documented there), priced on
    ``target``.

    ``target``: a :class:`shapewise.Target` (:func:`shapewise.make_target`): the GPU, dtype,
    sequence length (default 4096, the rule every command shares), micro-batch, tp,
    recompute, fp8 ``recipe`` and the cluster. Instead of it, its fields may be given one by
    one as earlier versions took them (``gpu=``, ``profile=``, ``dtype=``, ``seq_len=``,
    ``micro_batch=``, ``tp=``, ``recompute=``, ``n_gpus=``, ``global_batch=``,
    ``recipe=``); one target is built from them, once.

    ``vocab_size`` is shorthand for ``constraints.vocab_size``; left out, the tokenizer in
    ``constraints`` (or the arch's, noted) gives it. ``baseline`` is the user's own shape,
    compared first; the nearest published shapes follow. ``space`` replaces the space the
    constraints make (for tests and special searches). With the target's ``n_gpus`` and
    ``global_batch`` (sequences per optimizer step), the best shapes are priced under their
    fastest training plan of that many GPUs (:mod:`shapewise.search.planned`) and only those
    that fit one are kept; without them, each candidate states the smallest plan it fits.

    ``arch='moe'``: a mixture of experts of ``params`` in total and ``active_params`` per
    token, searched by :func:`shapewise.search.moe.search_moe` (experts, top-k and an expert
    FFN that is a multiple of the grouped-GEMM tile, at ``ep`` expert-parallel ranks); its
    grid has its own bounds, so of the constraints only the vocabulary applies, and no
    published baseline, cluster or tensor parallelism is compared.

    The target's ``recipe``: an fp8 recipe (:mod:`shapewise.recipe`, e.g. ``'te-delayed'``)
    every shape and baseline is priced under, as in :func:`shapewise.estimate`; a GPU that
    cannot run it is refused up front. The FFN widths tuned per hidden size are still timed
    in ``dtype``.

    >>> from shapewise import make_target
    >>> rec = recommend_shape(params=350e6, target=make_target(gpu="a100"))
    >>> rec.best.head_dim in (64, 128), rec.best.vocab_size % 64
    (True, 0)
    """
    c = constraints if constraints is not None else Constraints()
    if not isinstance(c, Constraints):
        raise InputError(f"constraints: expected a Constraints, got {type(c).__name__}")
    _validate(params, tolerance, vocab_size, arch)
    t = search_target(target, fields, by="recommend_shape")
    if vocab_size is not None:
        c = replace(c, vocab_size=int(vocab_size))
    if arch == "moe":
        from shapewise.search.moe_recommend import recommend_moe

        return recommend_moe(
            params=params, active_params=active_params, target=t, ep=ep,
            tolerance=tolerance, top_k=top_k, constraints=c, seed=seed,
            unsupported={"space": space, "baseline": baseline, "n_gpus": t.n_gpus,
                         "global_batch": t.global_batch, "n_trials": n_trials})
    if active_params is not None:
        raise InputError(f"active_params: only with arch='moe' (a {arch} model activates "
                         "all its parameters)")
    if ep != 1:
        raise InputError(f"ep: expert parallelism needs arch='moe', got ep={ep!r}")
    if baseline is not None and not isinstance(baseline, ModelShape):
        raise InputError(f"baseline: expected a ModelShape, got {type(baseline).__name__}")
    g, dt, rec, tp = t.gpu, t.dtype, t.recipe, t.tp
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not (
            0 <= seed < 2**32):
        raise InputError(f"seed: must be an integer in [0, 2**32 - 1], got {seed!r}")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(
            n_trials, numbers.Integral) or n_trials < 1):
        raise InputError(f"n_trials: must be a positive integer, got {n_trials!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise InputError(f"top_k: must be a positive integer, got {top_k!r}")
    if (t.n_gpus is None) != (t.global_batch is None):
        raise InputError("n_gpus/global_batch: give both (the cluster and the sequences per "
                         "optimizer step) or neither")
    cluster = t.n_gpus is not None
    vocab, vocab_note = c.vocab(arch)
    if space is None:
        space = space_from(c, arch=arch, params=float(params), tp=tp)
    pb = Problem(float(params), float(tolerance), arch, int(vocab or 1),  # type: ignore[arg-type]
                 t.seq_len, tp, image_size, patch_size, num_labels)  # type: ignore[arg-type]
    seq = make_shape(pb, 768, 64, 1, 3072, 1, 1).seq_len if arch == "vit" else t.seq_len
    at = priced_at(t, seq)
    unit = heads_unit(pb, space)
    space = with_tuned_ffn(space, pb, gpu=g, dtype=dt, tokens=t.micro_batch * seq)

    all_widths = hidden_sizes(pb, space)
    widths = [h for h in all_widths
              if space.ffn_for(h) % tp == 0 and head_options(pb, space, h)]
    if not all_widths:  # the budget is below the narrowest width the heads allow
        raise InputError(empty_reason(pb, space, []))
    if not widths:
        raise InputError(f"tp: heads must be multiples of {unit} (tp {tp}, planned TP "
                         f"{space.heads_multiple}) and no head dim in {space.head_dims} "
                         "gives such a width within the budget")

    cache: dict[tuple[int, ...], Candidate | None] = {}
    ranges: dict[tuple[int, ...], range] = {}

    def depths(h: int, d: int, r: int, f: int, pad: int) -> range:
        """Every layer count that keeps (h, d, r, f, pad) within the budget and band."""
        k = (h, d, r, f, pad)
        if k not in ranges:
            lo, hi = layer_range(pb, space, h, d, r, f, pad)
            ranges[k] = range(lo, hi + 1, space.layers_multiple)
        return ranges[k]

    def evaluate(h: int, d: int, r: int, f: int, L: int, pad: int) -> Candidate | None:
        key = (h, d, r, f, L, pad)
        if key not in cache and L not in depths(h, d, r, f, pad):
            return None  # outside the budget's tolerance or the band: never a candidate
        if key not in cache:
            try:
                shape = make_shape(pb, h, d, r, f, L, pad)
                est = price_step(shape, make_setup(shape, target=at(shape)))
            except InputError:
                cache[key] = None
            else:
                n = count_params(shape)
                cache[key] = Candidate(shape, est, n, _score(est, n, pb.params), "",
                                       tokens_per_s=shape_tokens_per_s(est))
        return cache[key]

    points = []
    for pt in enumerate_space(pb, space):
        points.append(pt)
        if len(points) > EXHAUSTIVE_MAX:
            break
    if not points:
        raise InputError(empty_reason(pb, space, widths))
    trials = 0
    bar = Progress(len(points) if len(points) <= EXHAUSTIVE_MAX else (
        DEFAULT_TRIALS if n_trials is None else int(n_trials)), "recommend", enabled=progress)
    if len(points) <= EXHAUSTIVE_MAX:
        method = "exhaustive"
        for pt in points:
            evaluate(*pt)
            bar.update(1, "")
    else:
        method = "optuna"
        trials = DEFAULT_TRIALS if n_trials is None else int(n_trials)
        optuna_search(pb, space, widths, trials, seed, depths, evaluate, bar)
        polish(pb, space, widths, cache, depths, evaluate)
    bar.close()

    found = [x for x in cache.values() if x is not None]
    if not found:
        raise InputError(f"params: no shape in the search space meets {params:.3g} ± "
                         f"{tolerance * 100:.3g}% (every shape was rejected by the estimate)")
    ranked = sorted(found, key=lambda x: (-x.score, x.shape.num_hidden_layers,
                                          x.shape.hidden_size, x.shape.head_dim))
    # Differences under NEAR_TIE are below what the model can resolve: among such near-ties
    # rank first the shapes that keep more of the co-design alignment rules, then the depths
    # that pipeline stages split evenly.
    top_score = ranked[0].score
    near = [x for x in ranked if x.score >= top_score * (1 - NEAR_TIE)]
    rest = ranked[len(near):]
    near.sort(key=lambda x: (-_rules_kept(x.shape, tp),
                             -_stage_splits(x.shape.num_hidden_layers), -x.score))
    ranked = near + rest
    # Distinct decisions: first one candidate per (width, head dim, KV heads), each at its
    # best depth and padding; then, if the space has fewer such decisions than top_k, the
    # next best depths of them. Vocabulary paddings of the same shape are never alternatives.
    by_shape: dict[tuple[int, ...], Candidate] = {}
    for x in ranked:
        s = x.shape
        by_shape.setdefault((s.hidden_size, s.head_dim, s.kv_heads, s.num_hidden_layers), x)
    firsts: dict[tuple[int, ...], Candidate] = {}
    for k, x in by_shape.items():
        firsts.setdefault(k[:3], x)
    rest_depths = [x for x in by_shape.values() if firsts[_key3(x)] is not x]
    distinct = {id(x): x for x in [*firsts.values(), *rest_depths]}
    top: list[Candidate] = []
    dropped = 0
    max_tp = space.heads_multiple if space.heads_multiple % tp == 0 else math.lcm(
        space.heads_multiple, tp)
    if cluster:  # each shape under its fastest plan of n_gpus GPUs
        from shapewise.search.planned import planned

        fits, dropped = planned(distinct.values(), at=at, budget=pb.params)
        top = [replace(x, reason=explain_shape(x.shape, x.estimate, x.estimate.tp, g))
               for x in fits[:top_k]]
        if not top:
            raise InputError(f"n_gpus: none of the best shapes fits {t.n_gpus} × {g.name} "
                             f"at global batch {t.global_batch} (seq {seq}) under any plan")
    for x in distinct.values() if not cluster else ():
        plan = smallest_plan(x.shape, target=at(x.shape), max_tp=max(max_tp, 8))
        if not plan.feasible:
            dropped += 1
            continue
        top.append(replace(x, reason=explain_shape(x.shape, x.estimate, tp, g), plan=plan))
        if len(top) >= top_k:
            break
    if not top:
        raise InputError(f"params: no shape within the constraints fits {g.name} at any "
                         f"plan (tp ≤ {max(max_tp, 8)}, FSDP, activation recompute); "
                         "lower micro_batch or seq_len")

    err = model_error(g.id, dt)
    notes: list[str] = []
    if vocab_note:
        notes.append(f"vocabulary {vocab:,}: {vocab_note}")
    if top[0].estimate.calibration != "fitted":
        notes.append(f"{g.name}: spec-derived cost-model defaults (no measurement fitted)")
    notes.append(f"model error on {g.id} {dt}: ±{err.fraction:.1%} ({err.source}); smaller "
                 "gains are within model error")
    assert top[0].plan is not None
    notes.append(f"plan: best shape {top[0].plan.text}")
    if dropped:
        notes.append(f"{dropped} faster shape(s) fit no training plan and were dropped")

    def price_baseline(shape: ModelShape) -> Estimate:
        if cluster:
            from shapewise.search.planned import best_plan

            est = best_plan(shape, at(shape))
            if est is None:
                raise InputError(f"fits no plan of {t.n_gpus} GPUs")
            return est
        return price_step(shape, make_setup(shape, target=at(shape)))

    baselines = _baselines(pb, space, g, price_baseline, baseline, top[0], err, notes,
                           full_step=cluster)
    rc = t.plan.recompute
    inputs: dict[str, Any] = {"arch": arch, "dtype": dt, "seq_len": seq, "tp": tp,
                              "micro_batch": t.micro_batch, "tolerance": float(tolerance),
                              "recompute": {"none": False, "full": True}.get(rc, rc),
                              "recipe": rec.name if rec is not None else None}
    if rec is not None:
        notes.append(f"priced under the fp8 recipe {rec.name} (the logits"
                     f"{'' if rec.fp8_attention else ' and attention'} in {dt})")
    if cluster:
        inputs.update(n_gpus=t.n_gpus, global_batch=t.global_batch)
    if arch == "vit":
        inputs.update(image_size=image_size, patch_size=patch_size, num_labels=num_labels)
    else:
        inputs["vocab_size"] = vocab
    return Recommendation(
        best=top[0].shape, estimate=top[0].estimate, candidates=tuple(top),
        baselines=tuple(baselines), model_error=err, budget=float(params), gpu=g.id,
        n_trials=trials, seed=int(seed), method=method, evaluated=len(cache), constraints=c,
        notes=tuple(notes), inputs=inputs,
    )


def _baselines(pb: Problem, space: SearchSpace, g: GPU, price_fn: Any,
               own: ModelShape | None, best: Candidate, err: ModelError,
               notes: list[str], *, full_step: bool) -> list[Baseline]:
    """The user's shape (if any), then the nearest published shapes, each priced."""
    rows: list[tuple[str, str, ModelShape]] = []
    if own is not None:
        rows.append((f"yours ({own.name})" if own.name else "yours",
                     "the baseline you gave", own))
    near = nearest_published(
        arch=pb.arch, params=pb.params, count=count_params,
        # the least vocabulary padding tensor parallelism needs (Megatron splits the logits)
        vocab_size=-(-pb.vocab_size // pb.tp) * pb.tp if pb.arch != "vit" else None,
        seq_len=pb.seq_len,
        image_size=pb.image_size, patch_size=pb.patch_size, num_labels=pb.num_labels)
    if not near:
        notes.append(f"no published {pb.arch} shape within {NEAR_FACTOR:g}× of the budget "
                     "to compare with (pass baseline= / --baseline)")
    for pubs, shape, _ in near:
        rows.append((" / ".join(p.name for p in pubs), "; ".join(p.source for p in pubs),
                     shape))
    out = []
    for label, source, shape in rows:
        try:
            est = price_fn(shape)
        except InputError as exc:
            notes.append(f"baseline {label}: not estimable at these settings ({exc})")
            continue
        n = count_params(shape)
        cand = Candidate(shape, est, n, _score(est, n, pb.params, full_step=full_step),
                         explain_shape(shape, est, est.tp, g),
                         tokens_per_s=est.tokens_per_s if full_step else
                         shape_tokens_per_s(est))
        gain = best.score / cand.score - 1
        caveats = []
        aspect = shape.hidden_size / shape.num_hidden_layers
        if "num_hidden_layers" not in space.fixed and not (
                space.min_aspect <= aspect <= space.max_aspect):
            caveats.append(f"its aspect {aspect:.4g} is outside the {space.min_aspect:g}-"
                           f"{space.max_aspect:g} band (depth is a quality choice)")
        if abs(n / pb.params - 1) > pb.tolerance:
            caveats.append(f"{n / pb.params:.2f}× the budget, compared per parameter")
        rule = space.ffn_for(shape.hidden_size) / shape.hidden_size
        if abs(shape.ffn_size / shape.hidden_size / rule - 1) > 0.1:
            caveats.append(f"its FFN is {shape.ffn_size / shape.hidden_size:.2f}·h (the rule "
                           f"here: {rule:.2f}·h)")
        out.append(Baseline(label, source, cand, gain, abs(gain) < err.fraction,
                            tuple(caveats)))
    return out
