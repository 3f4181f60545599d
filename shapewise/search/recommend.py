"""``recommend_shape()``: the transformer shape that trains fastest for a parameter budget.

An Optuna study (TPE sampler, seeded, so the same seed gives the same answer) walks the
search space of :mod:`shapewise.search.space`; each trial builds the candidate
:class:`ModelShape` and prices one training step with :func:`shapewise.estimate`.

Objective: predicted training tokens/s per GPU, normalised to the budget,
``tokens_per_s · params / budget``. Shapes inside the ±tolerance band are compared at equal
model size (training cost is proportional to params × tokens), so the search cannot win by
picking the smallest model the tolerance allows; the raw tokens/s is reported as well.
Candidates within 0.5% of the best score are a tie at the model's resolution; among them
the shape that keeps more of the alignment rules (multiples of 64) ranks first.

The baseline is the textbook shape of the same budget, as the source paper's GPT-3-style
models are built: aspect ratio h/L near 80, 32 heads whatever head dim that gives (64- or
128-dim heads not enforced; h a multiple of 256 so the head dim is at least a multiple of 8,
as FlashAttention requires), MHA, vocabulary unpadded, SwiGLU FFN int(8/3·h) literally
(rounded up to a multiple of tp only when tensor parallelism could not split it otherwise).

After the study, ``_polish`` prices a coarse grid over every width (the rule-of-thumb head
layouts) and then searches coordinate by coordinate around the best shapes (head layouts,
FFN sizes, paddings, neighbouring widths) until none improves.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, canonical_dtype, get_gpu, load_profile
from shapewise.model.params import count_params
from shapewise.model.shape import ModelShape, check_limit
from shapewise.progress import Progress
from shapewise.search.space import (
    Problem,
    SearchSpace,
    ffn_sizes,
    head_options,
    hidden_sizes,
    layer_range,
    make_shape,
    pad_options,
)
from shapewise.step import Estimate, estimate, memory_note

DEFAULT_TRIALS = 200
MAX_DEPTHS = 8
#: relative score difference treated as a tie (below the model's resolution)
NEAR_TIE = 0.005
BASELINE_ASPECT = 80.0
BASELINE_HEADS = 32


@dataclass(frozen=True, slots=True)
class Candidate:
    """One evaluated shape: its estimate, parameter count, objective and why."""

    shape: ModelShape
    estimate: Estimate
    params: int
    score: float
    """tokens/s per GPU × params / budget (the objective)"""
    reason: str

    def to_dict(self) -> dict[str, Any]:
        s, e = self.shape, self.estimate
        return {
            "hidden_size": s.hidden_size, "num_attention_heads": s.num_attention_heads,
            "head_dim": s.head_dim, "num_key_value_heads": s.kv_heads,
            "num_hidden_layers": s.num_hidden_layers, "intermediate_size": s.ffn_size,
            "vocab_size": s.vocab_size, "params": self.params,
            "tokens_per_s": e.tokens_per_s, "mfu": e.mfu, "model_tflops": e.model_tflops,
            "step_time_s": e.step_time_s, "memory_bytes": e.memory_bytes,
            "score": self.score, "reason": self.reason, "shape": s.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The winning shape, the ranked candidates, and the naive baseline for comparison."""

    best: ModelShape
    estimate: Estimate
    candidates: tuple[Candidate, ...]
    baseline: Candidate | None
    gain: float | None
    """best score / baseline score - 1 (None without a baseline)"""
    budget: float
    gpu: str
    n_trials: int
    seed: int
    notes: tuple[str, ...] = field(default=())
    inputs: dict[str, Any] = field(default_factory=dict)
    """what was asked: arch, dtype, seq_len, tp, micro_batch, tolerance, recompute, ..."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget, "gpu": self.gpu, "n_trials": self.n_trials,
            "seed": self.seed, "inputs": dict(self.inputs), "gain_over_baseline": self.gain,
            "best": self.candidates[0].to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "notes": list(self.notes),
        }


def resolve_target(gpu: str | GPU | None, profile: str | None, dtype: str
                   ) -> tuple[GPU, str]:
    """The GPU (``profile`` file wins over ``gpu``) and the dtype, checked against it: a
    dtype the GPU lacks is the error, not "no shape meets the budget"."""
    if profile is None and gpu is None:
        raise InputError("gpu: required (a name such as 'h100', or profile=PATH / --profile)")
    g = load_profile(profile) if profile is not None else get_gpu(gpu, field_name="gpu")  # type: ignore[arg-type]
    dt = canonical_dtype(dtype)
    g.peak_flops(dt)
    return g, dt


def default_space(arch: str) -> SearchSpace:
    """The search space recommend_shape and exhaustive_search use unless given one."""
    return SearchSpace(arch=arch, kv_ratios=(1, 2, 4, 8) if arch == "llama" else (1,))  # type: ignore[arg-type]


def explain_shape(shape: ModelShape, est: Estimate, tp: int = 1,
                  gpu: GPU | None = None) -> str:
    """One line: the alignment and wave rules the shape meets or breaks."""
    from shapewise.cost.gemm import explain_gemm

    good, bad = [], []
    d, h = shape.head_dim, shape.hidden_size
    (good if d % 64 == 0 else bad).append(f"head dim {d}")
    (good if h % 64 == 0 else bad).append(f"hidden {h}")
    if shape.arch != "vit" and shape.vocab_size:
        v = shape.vocab_size
        (good if v % (64 * tp) == 0 else bad).append(f"vocab {v}")
    if shape.activation == "swiglu":
        f = shape.ffn_size
        (good if f % 64 == 0 else bad).append(f"FFN {f}")
    # the forward GEMM that loses most to wave quantization (idle slots in its waves)
    worst = None
    for op in est.breakdown:
        if op.kind == "gemm" and op.phase == "forward" and op.name != "patch_embed":
            ex = explain_gemm(*op.shape, gpu=gpu or est.gpu, dtype=est.dtype, suggest=False)
            use = ex.tiles / (ex.waves * ex.slots)
            if worst is None or use < worst[1]:
                worst = (op.name, use)
    parts = []
    if good:
        parts.append("ok: " + ", ".join(good))
    if bad:
        parts.append("not a multiple of 64: " + ", ".join(bad))
    if worst is not None and worst[1] < 0.9:
        parts.append(f"{worst[0]} uses {worst[1]:.0%} of its wave slots")
    return "; ".join(parts)


def _validate(params: Any, tolerance: Any, tp: Any, micro_batch: Any, seq_len: Any,
              vocab_size: Any, arch: Any) -> None:
    if isinstance(params, bool) or not isinstance(params, numbers.Real) or not math.isfinite(
            params) or params <= 0:
        raise InputError(f"params: must be a positive number of parameters, got {params!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not (
            0 < tolerance < 1):
        raise InputError(f"tolerance: must be a fraction in (0, 1), got {tolerance!r}")
    for name, v in (("tp", tp), ("micro_batch", micro_batch), ("seq_len", seq_len),
                    ("vocab_size", vocab_size)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise InputError(f"{name}: must be a positive integer, got {v!r}")
        check_limit(name, int(v))
    if arch not in ("gpt", "llama", "vit"):
        raise InputError(f"arch: must be 'gpt', 'llama' or 'vit', got {arch!r}")


def baseline_shape(pb: Problem) -> ModelShape | None:
    """The textbook shape for the budget (module docstring), or None if none is near it.

    32 heads and h a multiple of 256, so the head dim h/32 is a multiple of 8 (the least
    FlashAttention accepts) but not necessarily of 64; for each depth the two such widths
    around 80·L are tried, and the one nearest the budget wins (ties: aspect nearest 80).
    """
    best: tuple[float, float, ModelShape] | None = None
    for L in range(1, 400):
        for h in {max(256, math.floor(BASELINE_ASPECT * L / 256) * 256),
                  max(256, math.ceil(BASELINE_ASPECT * L / 256) * 256)}:
            heads = BASELINE_HEADS
            if heads % pb.tp:
                heads = pb.tp * max(1, heads // pb.tp)
            if h % heads:
                continue
            f = 4 * h if pb.arch != "llama" else int(8 * h / 3)
            f = -(-f // pb.tp) * pb.tp  # the least rounding tensor parallelism needs
            try:
                # unpadded vocabulary, except the least padding TP needs (a multiple of t)
                shape = make_shape(pb, h, h // heads, 1, f, L, pb.tp)
            except InputError:
                continue
            err = abs(count_params(shape) / pb.params - 1)
            if err > pb.tolerance:
                continue
            key = (abs(h / L - BASELINE_ASPECT), err)
            if best is None or key < best[:2]:
                best = (*key, shape)
    return None if best is None else best[2]


def _rules_kept(shape: ModelShape, tp: int) -> int:
    kept = (shape.hidden_size % 64 == 0) + (shape.head_dim % 64 == 0)
    if shape.arch != "vit" and shape.vocab_size:
        kept += shape.vocab_size % (64 * tp) == 0
    if shape.activation == "swiglu":
        kept += shape.ffn_size % 64 == 0
    return int(kept)


#: shapes the coarse grid and the local polish may price after the Optuna study (each
#: costs 0.1-0.5 ms: 7B Llama on H100 recommends in ~2 s)
POLISH_BUDGET = 3000
#: best shapes the polish starts from, and keeps as its frontier
POLISH_SEEDS = 5


def _polish(pb: Problem, space: SearchSpace, widths: list[int],
            cache: dict[tuple[int, ...], Candidate | None],
            depths: Any, evaluate: Any) -> None:
    """A coarse grid over every width, then a coordinate search around the best shapes.

    From each of the POLISH_SEEDS best, move one coordinate at a time (width by one or two
    steps, every head dim and KV ratio, every FFN size, every vocabulary padding; at the
    best shape, head layouts and FFN sizes together) and price every feasible depth of the
    result; repeat from the new best until none improves or POLISH_BUDGET shapes are
    priced. The sampler finds the region; this closes the last percent it can leave (200
    trials do not see every head dim and FFN at every width):
    benchmarks/bench_search_gap.py measures the gap to the exhaustive optimum."""
    start = len(cache)
    visited: set[tuple[int, ...]] = set()
    pads = pad_options(pb, space)

    def spent() -> bool:
        return len(cache) - start >= POLISH_BUDGET

    def price(h: int, d: int, r: int, f: int, pad: int) -> None:
        ds = depths(h, d, r, f, pad)  # at most MAX_DEPTHS of them, evenly spaced
        for L in ds[::max(1, math.ceil(len(ds) / MAX_DEPTHS))]:
            if spent():
                return
            evaluate(h, d, r, f, L, pad)

    # A coarse grid first, so that no region is left to the sampler's luck: every width with
    # the rule-of-thumb layouts (head dims 64 and 128, each KV ratio, the FFN multiple of 64
    # nearest its default ratio, the largest vocabulary padding).
    for h in widths:
        fs = [x for x in ffn_sizes(pb, space, h) if x % pb.tp == 0]
        if not fs:
            continue
        target = 4 * h if pb.arch != "llama" else 8 * h / 3
        f = min(fs, key=lambda x: (x % 64 != 0, abs(x - target)))
        for d, r in head_options(pb, space, h):
            if d in (64, 128):
                price(h, d, r, f, max(pads))

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
        h, d, r, f, _, pad = center
        heads = head_options(pb, space, h)
        ffns = [x for x in ffn_sizes(pb, space, h) if x % pb.tp == 0]
        if center == best_keys()[0]:  # (sorting a few thousand scores: microseconds)
            # the best so far: every head layout with every FFN size at this width (the KV
            # heads change the parameter count, so the FFN that fits the budget moves too)
            for d2, r2 in heads:
                for f2 in ffns:
                    price(h, d2, r2, f2, pad)
        else:
            for d2, r2 in heads:  # every head dim and KV ratio at this width
                price(h, d2, r2, f, pad)
            for f2 in ffns:  # every FFN size at this width
                price(h, d, r, f2, pad)
        for pad2 in pads:
            price(h, d, r, f, pad2)
        if h in widths:  # neighbouring widths with the nearest head layout, every FFN
            i = widths.index(h)  # (a new width moves the depth and FFN that fit the budget)
            for h2 in widths[max(0, i - 2):i + 3]:
                opts = head_options(pb, space, h2)
                if h2 == h or not opts:
                    continue
                d2, r2 = min(opts, key=lambda o: (abs(o[0] - d), abs(o[1] - r)))
                for f2 in ffn_sizes(pb, space, h2):
                    if f2 % pb.tp == 0:
                        price(h2, d2, r2, f2, pad)
        frontier += [k for k in best_keys() if k not in visited]


def _score(est: Estimate, n: int, budget: float) -> float:
    return est.tokens_per_s * n / budget


def recommend_shape(
    *, params: float, gpu: str | GPU | None = None, seq_len: int = 2048,
    vocab_size: int = 50257, arch: str = "gpt", tp: int = 1, micro_batch: int = 1,
    tolerance: float = 0.05, n_trials: int | None = None, seed: int = 0,
    dtype: str = "bf16", recompute: bool = False, space: SearchSpace | None = None,
    top_k: int = 10, profile: str | None = None, image_size: int = 224,
    patch_size: int = 16, num_labels: int = 1000, progress: bool = False,
) -> Recommendation:
    """Search the shape with the highest predicted training throughput for ``params``.

    >>> rec = recommend_shape(params=350e6, gpu="a100", n_trials=40)
    >>> rec.best.vocab_size % 64, rec.best.hidden_size % 64
    (0, 0)
    """
    import optuna

    _validate(params, tolerance, tp, micro_batch, seq_len, vocab_size, arch)
    g, dt = resolve_target(gpu, profile, dtype)
    if space is None:
        space = default_space(arch)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not (
            0 <= seed < 2**32):
        raise InputError(f"seed: must be an integer in [0, 2**32 - 1], got {seed!r}")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(
            n_trials, numbers.Integral) or n_trials < 1):
        raise InputError(f"n_trials: must be a positive integer, got {n_trials!r}")
    pb = Problem(float(params), float(tolerance), arch, int(vocab_size),  # type: ignore[arg-type]
                 int(seq_len), int(tp), image_size, patch_size, num_labels)
    seq = make_shape(pb, 768, 64, 1, 3072, 1, 1).seq_len if arch == "vit" else int(seq_len)

    widths = [h for h in hidden_sizes(pb, space) if h % tp == 0]
    widths = [h for h in widths if head_options(pb, space, h)]
    if not widths:
        raise InputError(f"tp: {tp} divides no head count in the search space "
                         f"(head dims {space.head_dims}, hidden step {space.hidden_step})")
    # feasibility of the budget at the two ends of the space
    _check_budget(pb, space, widths)

    cache: dict[tuple[int, ...], Candidate | None] = {}
    ranges: dict[tuple[int, ...], tuple[int, int]] = {}

    def depths(h: int, d: int, r: int, f: int, pad: int) -> range:
        """Every layer count that keeps (h, d, r, f, pad) within the budget."""
        k = (h, d, r, f, pad)
        if k not in ranges:
            ranges[k] = layer_range(pb, space, h, d, r, f, pad)
        lo, hi = ranges[k]
        return range(lo, hi + 1)

    def evaluate(h: int, d: int, r: int, f: int, L: int, pad: int) -> Candidate | None:
        key = (h, d, r, f, L, pad)
        if key not in cache and L not in depths(h, d, r, f, pad):
            return None  # outside the budget's tolerance: never a candidate
        if key not in cache:
            try:
                shape = make_shape(pb, h, d, r, f, L, pad)
                est = estimate(shape, gpu=g, micro_batch=micro_batch,
                               seq_len=None if arch == "vit" else seq, tp=tp, dtype=dt,
                               recompute=recompute)
            except InputError:
                cache[key] = None
            else:
                n = count_params(shape)
                cache[key] = Candidate(shape, est, n, _score(est, n, pb.params), "")
        return cache[key]

    def objective(trial: optuna.Trial) -> float:
        h = widths[trial.suggest_int("hidden_index", 0, len(widths) - 1)]
        want_d = trial.suggest_categorical("head_dim", list(space.head_dims))
        want_r = trial.suggest_categorical("kv_ratio", list(space.kv_ratios))
        opts = head_options(pb, space, h)
        d, r = min(opts, key=lambda o: (abs(o[0] - want_d), abs(o[1] - want_r), -o[0]))
        fs = ffn_sizes(pb, space, h)
        f = fs[round(trial.suggest_float("ffn_pos", 0.0, 1.0) * (len(fs) - 1))]
        pad = trial.suggest_categorical("vocab_multiple", pad_options(pb, space))
        lo, hi = layer_range(pb, space, h, d, r, f, pad)
        if lo > hi:
            raise optuna.TrialPruned("no layer count meets the budget at this width")
        # Depth is cheap to scan: price every feasible layer count of this width (at most
        # MAX_DEPTHS of them, evenly spaced) and report the best to the sampler.
        step = max(1, math.ceil((hi - lo + 1) / MAX_DEPTHS))
        cands = [c for L in range(lo, hi + 1, step)
                 if (c := evaluate(h, d, r, f, L, pad)) is not None]
        if not cands:
            raise optuna.TrialPruned("shape rejected by validation")
        best = max(cands, key=lambda c: c.score)
        trial.set_user_attr("key", [h, d, r, f, best.shape.num_hidden_layers, pad])
        return best.score

    trials = DEFAULT_TRIALS if n_trials is None else int(n_trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(40, trials // 3 + 1),
                                         multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    # Warm start from the rules of thumb (head dim 128 and 64, vocab padded to 64·tp):
    # the sampler still explores everything else.
    for d in (128, 64):
        if d in space.head_dims:
            study.enqueue_trial({"head_dim": d, "vocab_multiple": max(pad_options(pb, space)),
                                 "kv_ratio": space.kv_ratios[0], "ffn_pos": 0.5,
                                 "hidden_index": len(widths) // 2})
    bar = Progress(trials, "recommend", enabled=progress)
    study.optimize(objective, n_trials=trials,
                   callbacks=[lambda s, t: bar.update(1, f"best {_best_note(s)}")])
    bar.close()

    _polish(pb, space, widths, cache, depths, evaluate)

    found = [c for c in cache.values() if c is not None]
    if not found:
        raise InputError(f"params: no shape in the search space meets {params:.3g} ± "
                         f"{tolerance * 100:.3g}% (every width's layer range was empty)")
    ranked = sorted(found, key=lambda c: (-c.score, c.shape.num_hidden_layers))
    # Differences under NEAR_TIE are below what the model can resolve: among such near-ties
    # rank first the shapes that keep more of the co-design alignment rules (hidden, head
    # dim, vocabulary, FFN multiples of 64), which hold across kernels and libraries.
    top_score = ranked[0].score
    near = [c for c in ranked if c.score >= top_score * (1 - NEAR_TIE)]
    rest = ranked[len(near):]
    near.sort(key=lambda c: (-_rules_kept(c.shape, tp), -c.score))
    ranked = near + rest
    unique: dict[str, Candidate] = {}
    for c in ranked:  # vocab multiples 64 and 128 can pad to the same size
        unique.setdefault(repr(c.shape), c)
    top = []
    for c in list(unique.values())[:top_k]:
        top.append(Candidate(c.shape, c.estimate, c.params, c.score,
                             explain_shape(c.shape, c.estimate, tp, g)))
    base_shape = baseline_shape(pb)
    base = None
    notes = []
    if base_shape is not None:
        try:
            be = estimate(base_shape, gpu=g, micro_batch=micro_batch,
                          seq_len=None if arch == "vit" else seq, tp=tp, dtype=dt,
                          recompute=recompute)
        except InputError as exc:
            notes.append(f"baseline not estimable: {exc}")
        else:
            n = count_params(base_shape)
            base = Candidate(base_shape, be, n, _score(be, n, pb.params),
                             explain_shape(base_shape, be, tp, g))
    else:
        notes.append("no textbook baseline lands within the tolerance of the budget")
    if top[0].estimate.calibration != "fitted":
        notes.append(f"{g.name}: spec-derived cost-model defaults (no measurement fitted)")
    over = memory_note(top[0].estimate.memory, g)
    if over:
        notes.append(f"best shape's {over} (the search ranks throughput, not memory)")
    gain = top[0].score / base.score - 1 if base else None
    return Recommendation(
        best=top[0].shape, estimate=top[0].estimate, candidates=tuple(top), baseline=base,
        gain=gain, budget=float(params), gpu=g.id, n_trials=trials, seed=seed,
        notes=tuple(notes),
        inputs={"arch": arch, "dtype": dt, "seq_len": seq, "tp": tp,
                "micro_batch": micro_batch, "tolerance": float(tolerance),
                "recompute": recompute,
                **({"image_size": image_size, "patch_size": patch_size,
                    "num_labels": num_labels} if arch == "vit" else
                   {"vocab_size": vocab_size})},
    )


def _best_note(study: Any) -> str:
    try:
        return f"{study.best_value:,.0f} tok/s"
    except ValueError:
        return ""


def _check_budget(pb: Problem, sp: SearchSpace, widths: list[int]) -> None:
    """Explain an impossible budget by the constraint that empties the space."""
    h_small, h_big = widths[0], widths[-1]
    d_s, r_s = head_options(pb, sp, h_small)[0]
    f_s = ffn_sizes(pb, sp, h_small)[0]
    smallest = count_params(make_shape(pb, h_small, d_s, r_s, f_s, max(
        sp.min_layers, math.ceil(h_small / sp.max_aspect)), 1))
    d_b, r_b = head_options(pb, sp, h_big)[0]
    f_b = ffn_sizes(pb, sp, h_big)[-1]
    largest = count_params(make_shape(pb, h_big, d_b, r_b, f_b, min(
        sp.max_layers, math.floor(h_big / sp.min_aspect)), max(pad_options(pb, sp))))
    if pb.params * (1 + pb.tolerance) < smallest:
        positions = max(pb.seq_len, 1024) * h_small if pb.arch == "gpt" else 0
        # GPT's learned position table grows with seq_len: blame it when it alone breaks
        # the budget (the smallest shape without it would fit)
        if positions and smallest - positions <= pb.params * (1 + pb.tolerance):
            raise InputError(
                f"seq_len: {pb.seq_len} learned positions alone take {positions:,} parameters "
                f"at hidden {h_small}, {positions / pb.params:.0%} of the {pb.params:.3g} "
                "budget; shorten seq_len or use arch 'llama' (rotary positions)")
        raise InputError(
            f"params: {pb.params:.3g} is below the smallest shape in the search space "
            f"({smallest:,} parameters at hidden {h_small}, min_layers {sp.min_layers}, "
            f"vocab {pb.vocab_size}): no feasible shape")
    if pb.params * (1 - pb.tolerance) > largest:
        raise InputError(
            f"params: {pb.params:.3g} is above the largest shape in the search space "
            f"({largest:,} parameters at hidden {h_big}, max_layers {sp.max_layers}): "
            "no feasible shape")
