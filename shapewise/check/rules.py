"""The shape rules: one documented function per rule, each under a stable id (``SW001``...).

A rule is a function of a :class:`CheckContext` (a :class:`ModelShape` with its run settings
and cost-model estimate, or a :class:`Trace` of a live module) returning :class:`Finding`
objects. Each finding names the field, its value, the fix (the new value), and what the fix
buys according to the cost model:

* ``gemm_speedup``: the kernels the fix touches (e.g. the logits GEMM with its two backward
  GEMMs), old time over new time;
* ``step_speedup``: the whole training step (``shapewise.estimate`` old over new for a
  ModelShape; the sum of the traced GEMM and attention times for a traced module).

Speedups are on one of three bases, named in ``Finding.basis``:

* ``"time"``: the fix does the same useful work (padding a vocabulary, regrouping heads):
  old time / new time;
* ``"throughput"``: the fix changes the model's FLOPs (hidden size, FFN size, tokens): time
  per model FLOP, old / new, so a larger, better-shaped model is not called slower;
* ``"tokens-per-gpu"``: the fix changes the parallelism: tokens/s per GPU, new / old.

Severity: ``error`` for shapes that crash the training (a tensor-parallel split that does
not divide, layers that do not split over pipeline stages); ``warning`` when the fix buys at
least :data:`WARNING_STEP_LOSS` of the step (or when a size misses even 16-byte alignment);
``info`` below that. docs/checks.md describes every rule with its source.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from shapewise.check.trace import Trace, TracedAttention, TracedGemm
from shapewise.cost.attention import attention_flops, attention_time
from shapewise.cost.gemm import explain_gemm, gemm_time
from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU
from shapewise.model.shape import ModelShape
from shapewise.step import Estimate, estimate

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
Basis = Literal["time", "throughput", "tokens-per-gpu"]

# ----------------------------------------------------------------------- thresholds
#: A fix that buys at least this fraction of the step is a warning (below: info). A judgment
#: call, stated so it can be argued with: it flags GPT-2's vocabulary (3.5-7% of the step)
#: and leaves Llama-2-7B's aligned shapes quiet.
WARNING_STEP_LOSS = 0.02
#: 128-byte tensor-core loads on A100 and later are 64 bf16/fp16 elements (co-design.md,
#: "Hardware facts"); nanoGPT and Megatron pad the vocabulary to multiples of it.
VOCAB_MULTIPLE = 64
HIDDEN_MULTIPLE = 64
#: FlashAttention's fast paths are head dims 64 and 128; little gain past 64 (rule 3).
HEAD_DIM_MULTIPLE = 64
#: FlashAttention needs a head dim that is a multiple of 8 (16 bytes), at most 256.
HEAD_DIM_MIN_MULTIPLE = 8
HEAD_DIM_MAX = 256
#: b·s is the M of every GEMM and the K of every weight-gradient GEMM.
TOKEN_MULTIPLE = 64
#: 16 bytes of a 16-bit type: below it tensor cores fall back to narrow loads.
MIN_ALIGN = 8
#: Wave quantization is flagged when the last wave is less than this full ...
WAVE_FILL_THRESHOLD = 0.5
#: ... and a size within WAVE_WINDOW runs at least this much more TFLOP/s.
WAVE_MIN_GAIN = 1.05
WAVE_WINDOW = 0.05
#: ... and the step gains at least 0.5% (a small GEMM's waves are not worth a model change).
WAVE_MIN_STEP_GAIN = 1.005
#: The FFN search looks this far either side of the current size ...
FFN_WINDOW = 0.05
#: ... and reports an aligned FFN size only when another runs this much more TFLOP/s: bigger
#: GEMMs run a few percent more TFLOP/s anyway, which is no reason to change a model.
FFN_MIN_GAIN = 1.05
#: Fraction of the GPU's memory a training step may plan on using: the rest is the CUDA
#: context, framework workspaces and allocator fragmentation, which the model omits.
MEMORY_HEADROOM = 0.9
#: Most candidates any search prices (keeps the check well under a second).
MAX_CANDIDATES = 48
#: Sizes within this fraction of the fastest count as fastest; the nearest of them is the fix.
FFN_TOLERANCE = 0.01


# ------------------------------------------------------------------------- findings
@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem with a shape: what, why, the fix, and what the fix buys."""

    rule_id: str
    """stable id, e.g. 'SW001' (see RULES and docs/checks.md)"""
    severity: Severity
    """'error' (the training fails), 'warning' (>= 2% of the step), 'info'"""
    message: str
    """what is wrong and why, in one sentence"""
    field: str
    """the setting at fault, as the model spells it ('vocab_size', 'lm_head.n', 'tp')"""
    value: Any
    """its current value"""
    fix: Any | None
    """the value to use instead; None when no single value fixes it"""
    gemm_speedup: float | None = None
    """the touched kernels (``kernel``): old time / new time (see ``basis``); None: unpriced"""
    step_speedup: float | None = None
    """the whole step, on the same basis; None when the current shape cannot run"""
    detail: str = ""
    """the numbers behind the finding: kernel shapes, times, alternatives, assumptions"""
    kernel: str = ""
    """what gemm_speedup prices, e.g. 'logits GEMM' or 'attention'"""
    basis: Basis = "time"
    """'time' (same work), 'throughput' (per model FLOP), 'tokens-per-gpu'"""
    gpu: str = ""
    """the GPU id the speedups were priced on"""

    @property
    def rule(self) -> str:
        """The rule's short name ('vocab-alignment')."""
        return RULE_NAMES.get(self.rule_id, self.rule_id)

    @property
    def step_loss(self) -> float:
        """Fraction of the step the fix saves (0 when unpriced or not faster)."""
        s = self.step_speedup
        return 0.0 if s is None or s <= 1 else 1 - 1 / s

    def speedup_text(self) -> str:
        """'logits GEMM 1.46× faster, step 8.7% faster' (empty when unpriced)."""
        word = {"time": "faster", "throughput": "faster per FLOP",
                "tokens-per-gpu": "more tokens/s per GPU"}[self.basis]
        parts = []
        if self.gemm_speedup is not None:
            parts.append(f"{self.kernel or 'kernel'} {self.gemm_speedup:.2f}× {word}")
        if self.step_speedup is not None:
            pct = (self.step_speedup - 1) * 100
            if abs(pct) < 0.05:
                parts.append("step unchanged")
            else:
                parts.append(f"step {pct:.1f}% {word}" if pct > 0 else f"step {-pct:.1f}% slower")
        return ", ".join(parts)

    def summary(self) -> str:
        """'vocab_size 50257 → 50304: logits GEMM 1.46× faster, step 8.7% faster'."""
        head = f"{self.field} {self.value}"
        if self.fix is not None:
            head += f" → {self.fix}"
        speed = self.speedup_text()
        return f"{head}: {speed}" if speed else head

    def __str__(self) -> str:
        return f"{self.rule_id} {self.severity}: {self.message} [{self.summary()}]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the rule name and the one-line summary."""
        out = asdict(self)
        out["rule"] = self.rule
        out["summary"] = self.summary()
        return out


# -------------------------------------------------------------------------- context
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckContext:
    """Everything a rule reads: a shape (or a trace), the hardware and the run settings."""

    gpu: GPU
    """the GPU the speedups are priced on"""
    dtype: str = "bf16"
    """data type of the math"""
    tp: int = 1
    """tensor-parallel size (Megatron layout: heads, FFN and vocabulary split t ways)"""
    micro_batch: int = 1
    """b: sequences per GPU per step"""
    seq_len: int | None = None
    """s: tokens per sequence (resolved for a shape; from the inputs for a trace)"""
    pipeline_stages: int = 1
    """pipeline-parallel stages the layers are split over"""
    shape: ModelShape | None = None
    trace: Trace | None = None
    estimate: Estimate | None = None
    """the step of ``shape`` as given; None when it cannot run (tp does not divide)"""
    note: str = ""
    """appended to every finding's detail (e.g. that the GPU is a default)"""
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def price(self, shape: ModelShape | None = None, *, tp: int | None = None,
              micro_batch: int | None = None, seq_len: int | None = None) -> Estimate | None:
        """The estimate of a variant of this context's shape; None if it cannot run."""
        shape = shape if shape is not None else self.shape
        if shape is None:
            return None
        key = (shape, tp or self.tp, micro_batch or self.micro_batch, seq_len or self.seq_len)
        if key not in self._cache:
            try:
                self._cache[key] = estimate(shape, gpu=self.gpu, micro_batch=key[2],
                                            seq_len=key[3], tp=key[1], dtype=self.dtype)
            except InputError:
                self._cache[key] = None
        return self._cache[key]

    def gemm(self, m: int, n: int, k: int, batch: int = 1) -> float:
        """Predicted seconds of one GEMM on this context's GPU and dtype."""
        return gemm_time(m, n, k, gpu=self.gpu, dtype=self.dtype, batch=batch)

    @property
    def align(self) -> int:
        """Elements in the GPU's full alignment for the dtype (64 for bf16 on A100+)."""
        return self.gpu.alignment_elements(self.dtype)


def tp_problems(shape: ModelShape, tp: int) -> list[tuple[str, int]]:
    """(field, value) of every size that tensor parallelism of ``tp`` cannot split evenly."""
    if tp <= 1:
        return []
    sizes = [("num_attention_heads", shape.num_attention_heads),
             # the row-parallel projections split the attention width a·d, which is h
             # unless the config states its own head dim (then a/t covers it)
             *([] if shape.decoupled_head_dim else [("hidden_size", shape.hidden_size)]),
             ("num_key_value_heads", shape.kv_heads),
             ("intermediate_size", shape.ffn_size)]
    if shape.vocab_size is not None:
        sizes.append(("vocab_size", shape.vocab_size))
    return [(name, value) for name, value in sizes if value % tp]


def shape_context(shape: ModelShape, *, gpu: GPU, dtype: str = "bf16", tp: int = 1,
                  micro_batch: int = 1, seq_len: int | None = None,
                  pipeline_stages: int = 1, note: str = "") -> CheckContext:
    """A context for ``shape``; prices it unless tensor parallelism cannot split it.

    Raises InputError for settings no rule can judge (a sequence longer than learned
    positions allow, a dtype the GPU lacks), naming the setting.
    """
    from shapewise.model.shape import resolve_seq_len

    if shape.arch != "vit" and seq_len is None:
        seq_len = shape.max_position_embeddings
    s = resolve_seq_len(shape, seq_len)
    est = None
    if not tp_problems(shape, tp):
        est = estimate(shape, gpu=gpu, micro_batch=micro_batch, seq_len=s, tp=tp,
                       dtype=dtype)
    ctx = CheckContext(gpu=gpu, dtype=dtype, tp=tp, micro_batch=micro_batch, seq_len=s,
                       pipeline_stages=pipeline_stages, shape=shape, estimate=est, note=note)
    if est is not None:
        ctx._cache[(shape, tp, micro_batch, s)] = est
    return ctx


# ---------------------------------------------------------------------------- registry
RuleFn = Callable[[CheckContext], list[Finding]]
#: rule id -> the rule function (its docstring says what, why and the fix)
RULES: dict[str, RuleFn] = {}
#: rule id -> short name
RULE_NAMES: dict[str, str] = {}


def _rule(rule_id: str, name: str) -> Callable[[RuleFn], RuleFn]:
    def register(fn: RuleFn) -> RuleFn:
        RULES[rule_id] = fn
        RULE_NAMES[rule_id] = name
        return fn

    return register


def run_rules(ctx: CheckContext, rules: Iterable[str] | None = None) -> list[Finding]:
    """Every finding of ``rules`` (default: all), errors first, then by step saved."""
    ids = list(RULES) if rules is None else list(rules)
    for rule_id in ids:
        if rule_id not in RULES:
            raise InputError(f"rules: unknown rule {rule_id!r}; known: {', '.join(RULES)}")
    found = [f for rule_id in ids for f in RULES[rule_id](ctx) if not _fix_is_slower(f)]
    return sorted(found, key=lambda f: (-SEVERITIES.index(f.severity), -f.step_loss,
                                        f.rule_id))


def _fix_is_slower(f: Finding) -> bool:
    """An info-level fix that the cost model prices no faster for the step is not advice:
    it is dropped. (A warning or error keeps its fix: it is there for a reason the price
    does not cover, e.g. a size below 16-byte alignment, or a split that cannot run.)"""
    return (f.severity == "info" and f.fix is not None and f.step_speedup is not None
            and f.step_speedup <= 1.0)


# ----------------------------------------------------------------------------- helpers
def _severity(step: float | None, *, floor: Severity = "info") -> Severity:
    level = 1 if step is not None and step > 1 and 1 - 1 / step >= WARNING_STEP_LOSS else 0
    return SEVERITIES[max(level, SEVERITIES.index(floor))]


def _make(ctx: CheckContext, rule_id: str, *, severity: Severity | None = None,
          floor: Severity = "info", detail: str = "", **kw: Any) -> Finding:
    sev = severity or _severity(kw.get("step_speedup"), floor=floor)
    notes = "; ".join(x for x in (detail, ctx.note) if x)
    return Finding(rule_id=rule_id, severity=sev, detail=notes, gpu=ctx.gpu.id, **kw)


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def _ops_time(est: Estimate, names: Sequence[str]) -> float:
    return sum(op.total_s for op in est.breakdown if op.name in names)


def _ops_flops(est: Estimate, names: Sequence[str]) -> float:
    return sum(op.flops * op.count for op in est.breakdown if op.name in names)


def _rank_flops(est: Estimate) -> float:
    return sum(op.flops * op.count for op in est.breakdown)


def _gain(old: Estimate | None, new: Estimate | None, names: Sequence[str],
          basis: Basis) -> tuple[float | None, float | None]:
    """(kernel speedup, step speedup) of ``new`` over ``old`` on ``basis``."""
    if old is None or new is None:
        return None, None
    t_old, t_new = _ops_time(old, names), _ops_time(new, names)
    if basis == "tokens-per-gpu":
        return None, new.tokens_per_s / old.tokens_per_s
    if basis == "time":
        kernel = t_old / t_new if names and t_new > 0 else None
        return kernel, old.step_time_s / new.step_time_s
    f_old, f_new = _ops_flops(old, names), _ops_flops(new, names)
    kernel = (t_old / f_old) / (t_new / f_new) if names and f_old and f_new and t_new else None
    step = (old.step_time_s / _rank_flops(old)) / (new.step_time_s / _rank_flops(new))
    return kernel, step


def _window(center: int, unit: int, frac: float, *, minimum: int | None = None) -> list[int]:
    """Multiples of ``unit`` within ``frac`` of ``center`` (at most MAX_CANDIDATES, evenly
    thinned), never below ``minimum`` (default: unit)."""
    lo = max(minimum or unit, _round_up(int(center * (1 - frac)), unit))
    hi = max(lo, (int(center * (1 + frac)) // unit) * unit)
    stride = max(1, (hi - lo) // unit // MAX_CANDIDATES + 1) * unit
    return list(range(lo, hi + 1, stride))


def _triple(ctx: CheckContext, m: int, n: int, k: int, batch: int = 1) -> float:
    """A forward GEMM (m, n, k) and its two backward GEMMs (step.py's convention)."""
    return ctx.gemm(m, n, k, batch) + ctx.gemm(m, k, n, batch) + ctx.gemm(k, n, m, batch)


def _tokens(ctx: CheckContext) -> int:
    return ctx.micro_batch * (ctx.seq_len or 1)


# ------------------------------------------------------------------- trace pricing
def _trace_cost(ctx: CheckContext) -> tuple[float, float]:
    """(seconds, FLOPs) of every traced GEMM and attention call, one step."""
    key = ("trace-cost",)
    if key not in ctx._cache:
        tr = ctx.trace
        assert tr is not None
        t = sum(ctx.gemm(g.m, g.n, g.k, g.batch) * g.count for g in tr.gemms)
        f = sum(g.flops * g.count for g in tr.gemms)
        for a in tr.attentions:
            t += _attention_pair(ctx, a) * a.count
            f += _attention_flops(a, tr.backward) * a.count
        ctx._cache[key] = (t, f)
    return ctx._cache[key]


def _attention_pair(ctx: CheckContext, a: TracedAttention, *, heads: int | None = None,
                    head_dim: int | None = None, kv_heads: int | None = None,
                    seq_len: int | None = None) -> float:
    """Forward (+ backward when traced) time of one attention call, optionally changed."""
    kw = dict(batch=a.batch, heads=heads or a.heads, seq_len=seq_len or a.seq_len,
              head_dim=head_dim or a.head_dim, gpu=ctx.gpu, dtype=ctx.dtype,
              causal=a.causal and (seq_len or a.seq_len) <= (seq_len or a.seq_len_kv),
              kv_heads=kv_heads or a.kv_heads, seq_len_kv=seq_len or a.seq_len_kv)
    t = attention_time(**kw)  # type: ignore[arg-type]
    if ctx.trace is not None and ctx.trace.backward:
        t += attention_time(**kw, backward=True)  # type: ignore[arg-type]
    return t


def _attention_flops(a: TracedAttention, backward: bool, seq_len: int | None = None) -> float:
    s = seq_len or a.seq_len
    f = attention_flops(batch=a.batch, heads=a.heads, seq_len=s, head_dim=a.head_dim,
                        causal=a.causal and s <= (seq_len or a.seq_len_kv),
                        seq_len_kv=seq_len or a.seq_len_kv)
    return f * (3 if backward else 1)


def _trace_step(ctx: CheckContext, dt: float, df: float, basis: Basis) -> float | None:
    """Step speedup of a change that saves ``dt`` seconds and adds ``df`` FLOPs."""
    t, f = _trace_cost(ctx)
    if t <= 0 or t - dt <= 0:
        return None
    if basis == "time":
        return t / (t - dt)
    return (t / f) / ((t - dt) / (f + df))


def _reprice(ctx: CheckContext, gemms: Iterable[TracedGemm],
             change: Callable[[int], int]) -> tuple[float, float, float, float]:
    """(old s, new s, old FLOPs, new FLOPs) of ``gemms`` with every dim mapped by ``change``."""
    t0 = t1 = f0 = f1 = 0.0
    for g in gemms:
        new = replace(g, m=change(g.m), n=change(g.n), k=change(g.k))
        t0 += ctx.gemm(g.m, g.n, g.k, g.batch) * g.count
        t1 += ctx.gemm(new.m, new.n, new.k, new.batch) * new.count
        f0 += g.flops * g.count
        f1 += new.flops * new.count
    return t0, t1, f0, f1


def _by_name(trace: Trace) -> dict[str, list[TracedGemm]]:
    groups: dict[str, list[TracedGemm]] = {}
    for g in trace.gemms:
        groups.setdefault(g.name or "(unnamed)", []).append(g)
    return groups


def _trace_vocab(trace: Trace) -> int | None:
    """The vocabulary of a traced language model: its largest embedding table."""
    if not trace.embeddings:
        return None
    return max(num for _, num, _ in trace.embeddings)


# --------------------------------------------------------------------------- the rules
@_rule("SW001", "vocab-alignment")
def vocab_alignment(ctx: CheckContext) -> list[Finding]:
    """Vocabulary a multiple of 64, and of 64·tp when the logits are vocab-parallel.

    Why: the logits GEMM (b·s × h) · (h × v/t) and its backward have v/t as a contiguous
    dimension; an odd size forces narrow tensor-core loads and a ragged last tile. nanoGPT
    pads GPT-2's 50257 to 50304 ("~25% speedup"); Megatron pads to a multiple of
    128·tp. Fix: pad the embedding and the output layer to the next multiple; the extra
    rows are never predicted. Speedup: the logits GEMMs and the step, same work ("time").
    A traced module: the largest ``nn.Embedding`` is the vocabulary, and the GEMMs with
    that dimension are the logits.
    """
    if ctx.trace is not None:
        return _vocab_traced(ctx)
    shape = ctx.shape
    if shape is None or shape.vocab_size is None:
        return []
    v, t = shape.vocab_size, ctx.tp
    multiple = VOCAB_MULTIPLE * t
    if v % multiple == 0:
        return []
    fix = _round_up(v, multiple)
    new = ctx.price(shape.replace(vocab_size=fix))
    kernel, step = _gain(ctx.estimate, new, ("logits",), "time")
    why = (f"{VOCAB_MULTIPLE} × tp {t}, so each rank's slice of the logits stays aligned"
           if t > 1 else "128-byte tensor-core loads")
    detail = ""
    if ctx.estimate is not None and new is not None:
        T, h = _tokens(ctx), shape.hidden_size
        detail = (f"logits GEMM ({T}×{v // t}×{h}) and its two "
                  f"backward GEMMs: {_ops_time(ctx.estimate, ('logits',)) * 1e3:.2f} ms → "
                  f"{_ops_time(new, ('logits',)) * 1e3:.2f} ms per step")
    elif v % t:
        detail = f"vocab_size {v} does not split over tp={t} ranks at all (see SW006)"
    return [_make(
        ctx, "SW001", floor="warning" if (v // max(1, t)) % MIN_ALIGN or v % t else "info",
        message=(f"vocab_size {v} is not a multiple of {multiple} ({why}); pad it to {fix}: "
                 "the extra rows are never predicted"),
        field="vocab_size", value=v, fix=fix, gemm_speedup=kernel, step_speedup=step,
        kernel="logits GEMM", basis="time", detail=detail)]


def _vocab_traced(ctx: CheckContext) -> list[Finding]:
    tr = ctx.trace
    assert tr is not None
    v = _trace_vocab(tr)
    if v is None or v % VOCAB_MULTIPLE == 0:
        return []
    groups = _by_name(tr)
    logits = {name: gs for name, gs in groups.items()
              if any(g.phase == "forward" and g.n == v for g in gs)}
    if not logits:
        return []
    fix = _round_up(v, VOCAB_MULTIPLE)
    out = []
    for name, gs in logits.items():
        t0, t1, _, _ = _reprice(ctx, gs, lambda x: fix if x == v else x)
        fwd = next(g for g in gs if g.phase == "forward")
        out.append(_make(
            ctx, "SW001", floor="warning" if v % MIN_ALIGN else "info",
            message=(f"{name}: the logits GEMM has vocab {v}, not a multiple of "
                     f"{VOCAB_MULTIPLE} (128-byte tensor-core loads); pad the embedding "
                     f"and output layer to {fix}: the extra rows are never predicted"),
            field=f"{name}.vocab_size", value=v, fix=fix,
            gemm_speedup=t0 / t1 if t1 else None,
            step_speedup=_trace_step(ctx, t0 - t1, 0.0, "time"),
            kernel=f"{name} GEMM", basis="time",
            detail=(f"{name}: forward {fwd.m}×{fwd.n}×{fwd.k} and backward GEMMs "
                    f"{t0 * 1e3:.2f} ms → {t1 * 1e3:.2f} ms per step; step = traced GEMMs "
                    "+ attention")))
    return out


@_rule("SW002", "hidden-alignment")
def hidden_alignment(ctx: CheckContext) -> list[Finding]:
    """Hidden size a multiple of 64.

    Why: h is the K of the QKV and MLP-up GEMMs and the N of the output projection and
    MLP-down, in every layer; co-design rule 3 (Anthony et al. 2024). Fix: the nearest
    multiple of 64 that the head count divides into a head dim that is a multiple of 8
    (if that is more than 25% away: the next multiple of 64, with heads of 64 or 128); a 4h
    FFN follows it. Speedup on the "throughput" basis, since the model's FLOPs change.
    """
    shape = ctx.shape
    if shape is None or shape.hidden_size % HIDDEN_MULTIPLE == 0:
        return []
    h, a, f = shape.hidden_size, shape.num_attention_heads, shape.ffn_size
    # nearest multiple of 64 that the heads divide into a 16-byte-aligned head dim (a
    # decoupled head dim does not depend on h: any multiple of 64 will do)
    unit = HIDDEN_MULTIPLE if shape.decoupled_head_dim else math.lcm(HIDDEN_MULTIPLE,
                                                                     a * MIN_ALIGN)
    lo, hi = (h // unit) * unit, _round_up(h, unit)
    fix = hi if lo < unit or hi - h <= h - lo else lo
    heads = a
    if abs(fix - h) > h // 4 and not shape.decoupled_head_dim:
        # too far: keep h near, regroup the heads instead (a stated head dim stays as it is)
        fix = _round_up(h, HIDDEN_MULTIPLE)
        heads = min((fix // d for d in (64, 128) if fix % d == 0),
                    key=lambda x: (abs(x - a), x), default=a)
    changes: dict[str, Any] = {"hidden_size": fix,
                               "intermediate_size": 4 * fix if f == 4 * h else f}
    if heads != a:
        g = shape.kv_heads
        changes["num_attention_heads"] = heads
        changes["num_key_value_heads"] = heads if g == a else (_kv_for(a, g, heads, 1) or heads)
    try:
        new = ctx.price(shape.replace(**changes))
    except InputError:
        new = None
    names = ("qkv_proj", "out_proj", "mlp_up", "mlp_gate_up", "mlp_down")
    kernel, step = _gain(ctx.estimate, new, names, "throughput")
    with_heads = (f" with {heads} heads (head_dim {fix // heads})" if heads != a else "")
    return [_make(
        ctx, "SW002", floor="warning" if h % MIN_ALIGN else "info",
        message=(f"hidden_size {h} is not a multiple of {HIDDEN_MULTIPLE}: it is a GEMM "
                 f"dimension in every projection of every layer; use {fix}{with_heads}"),
        field="hidden_size", value=h, fix=fix, gemm_speedup=kernel, step_speedup=step,
        kernel="layer GEMMs", basis="throughput",
        detail="FFN scaled with it (4h)" if f == 4 * h else "")]


def _kv_for(a: int, g: int, a2: int, tp: int) -> int | None:
    """KV heads for ``a2`` query heads: MHA stays MHA; GQA keeps its group size if it can,
    else the divisor of a2 (split by tp) nearest g·a2/a."""
    if g == a:
        return a2
    group = a // g
    if a2 % group == 0 and (a2 // group) % tp == 0:
        return a2 // group
    target = g * a2 / a
    options = [x for x in range(tp, a2 + 1, tp) if a2 % x == 0]
    return min(options, key=lambda x: (abs(x - target), x)) if options else None


def _head_options(shape: ModelShape, tp: int, *, min_multiple: int = HEAD_DIM_MULTIPLE
                  ) -> list[tuple[int, int, int]]:
    """(heads, kv heads, head dim) whose head dim is a multiple of ``min_multiple`` (<= 256)
    and whose heads split over ``tp``."""
    h = shape.hidden_size
    out = []
    if shape.decoupled_head_dim:  # the head dim is the config's own: only the count moves
        d = shape.head_dim
        if d % min_multiple:
            return []
        a = shape.num_attention_heads
        for a2 in range(tp, 2 * a + tp, tp):
            g2 = _kv_for(a, shape.kv_heads, a2, tp)
            if g2 is not None:
                out.append((a2, g2, d))
        return out
    for d in range(min_multiple, HEAD_DIM_MAX + 1, min_multiple):
        if h % d:
            continue
        a2 = h // d
        if a2 % tp:
            continue
        g2 = _kv_for(shape.num_attention_heads, shape.kv_heads, a2, tp)
        if g2 is not None:
            out.append((a2, g2, d))
    return out


@_rule("SW003", "head-dim")
def head_dim(ctx: CheckContext) -> list[Finding]:
    """Head dim h/a a multiple of 64 (a multiple of 8 at the very least).

    Why: FlashAttention compiles head dims in buckets of 32 up to 256 and its fast paths are
    64 and 128; a head dim of 80 runs the 96-wide kernel, and one that is not a multiple of 8
    has no fused kernel at all (falls back to materialised attention). More factors of two
    help, with little gain past 64 (co-design rule 3). Fix: the head count whose head dim is
    a multiple of 64 and whose step the cost model prices fastest (the KV heads follow; the
    parameters do not change). Speedup: attention and the step, same work.
    """
    if ctx.trace is not None:
        return _head_dim_traced(ctx)
    shape = ctx.shape
    if shape is None:
        return []
    d, h, a, g = shape.head_dim, shape.hidden_size, shape.num_attention_heads, shape.kv_heads
    if d % HEAD_DIM_MULTIPLE == 0:
        return []
    floor: Severity = "warning" if d % HEAD_DIM_MIN_MULTIPLE else "info"
    why = ("not even a multiple of 8: FlashAttention has no kernel for it and attention "
           "falls back to the unfused path" if d % HEAD_DIM_MIN_MULTIPLE else
           f"FlashAttention runs it in its {min(HEAD_DIM_MAX, 32 * math.ceil(d / 32))}-wide "
           "kernel; its fast paths are 64 and 128")
    if shape.decoupled_head_dim:
        return _head_dim_decoupled(ctx, shape, floor, why)
    options = _head_options(shape, ctx.tp)
    if not options:
        return [_make(
            ctx, "SW003", floor=floor,
            message=(f"head_dim {d} = hidden_size {h} / num_attention_heads {a} is not a "
                     f"multiple of {HEAD_DIM_MULTIPLE} ({why}); no head count gives one for "
                     f"hidden_size {h}: change hidden_size (SW002)"),
            field="num_attention_heads", value=a, fix=None)]
    priced = []
    for a2, g2, d2 in options:
        new = ctx.price(shape.replace(num_attention_heads=a2, num_key_value_heads=g2))
        basis: Basis = "time" if g2 * d2 == g * d else "throughput"
        kernel, step = _gain(ctx.estimate, new, ("attention",), basis)
        priced.append((a2, g2, d2, kernel, step, basis))
    # fastest step first; unpriced (tp cannot split the current shape): nearest head dim
    a2, g2, d2, kernel, step, basis = min(
        priced, key=lambda p: (-(p[4] or 0), abs(p[2] - d), p[2]))
    if floor == "info" and step is not None and step <= 1:
        return []  # fused-kernel head dim and no faster grouping: a choice, not a defect
    kv = f" and num_key_value_heads {g} → {g2}" if g != a and g2 != g else ""
    others = ", ".join(f"{x} heads (head_dim {z})" + (f": step {(s - 1) * 100:+.1f}%"
                                                      if s else "")
                       for x, _, z, _, s, _ in priced if x != a2)
    return [_make(
        ctx, "SW003", floor=floor,
        message=(f"head_dim {d} = hidden_size {h} / num_attention_heads {a} is not a multiple "
                 f"of {HEAD_DIM_MULTIPLE} ({why}); use {a2} heads (head_dim {d2}){kv}"),
        field="num_attention_heads", value=a, fix=a2, gemm_speedup=kernel, step_speedup=step,
        kernel="attention", basis=basis,
        detail=f"also possible: {others}" if others else "")]


def _head_dim_decoupled(ctx: CheckContext, shape: ModelShape, floor: Severity,
                        why: str) -> list[Finding]:
    """SW003 for a config that states its head dim: the fix is the head dim itself (the
    multiple of 64 next to it that the cost model prices fastest per FLOP)."""
    d = shape.head_dim
    priced = []
    for d2 in sorted({(d // HEAD_DIM_MULTIPLE) * HEAD_DIM_MULTIPLE,
                      _round_up(d, HEAD_DIM_MULTIPLE)}):
        if not HEAD_DIM_MULTIPLE <= d2 <= HEAD_DIM_MAX:
            continue
        new = ctx.price(shape.replace(head_dim=d2))
        kernel, step = _gain(ctx.estimate, new, ("attention", "qkv_proj", "out_proj"),
                             "throughput")
        priced.append((d2, kernel, step))
    if not priced:
        return []
    d2, kernel, step = min(priced, key=lambda p: (-(p[2] or 0), abs(p[0] - d)))
    if floor == "info" and step is not None and step <= 1:
        return []
    return [_make(
        ctx, "SW003", floor=floor,
        message=(f"head_dim {d} (stated by the config; a·d = {shape.q_size}) is not a "
                 f"multiple of {HEAD_DIM_MULTIPLE} ({why}); use head_dim {d2}"),
        field="head_dim", value=d, fix=d2, gemm_speedup=kernel, step_speedup=step,
        kernel="attention", basis="throughput",
        detail="the attention width a·d and its projections change with it")]


def _head_dim_traced(ctx: CheckContext) -> list[Finding]:
    tr = ctx.trace
    assert tr is not None
    out = []
    for att in tr.attentions:
        d, heads = att.head_dim, att.heads
        if d % HEAD_DIM_MULTIPLE == 0:
            continue
        width = heads * d
        best = None
        old = _attention_pair(ctx, att)
        for d2 in range(HEAD_DIM_MULTIPLE, HEAD_DIM_MAX + 1, HEAD_DIM_MULTIPLE):
            if width % d2:
                continue
            h2 = width // d2
            kv2 = h2 if att.kv_heads == heads else (
                h2 * att.kv_heads // heads if (h2 * att.kv_heads) % heads == 0 else h2)
            new = _attention_pair(ctx, att, heads=h2, head_dim=d2, kv_heads=kv2)
            if best is None or new < best[2]:
                best = (h2, d2, new)
        floor: Severity = "warning" if d % HEAD_DIM_MIN_MULTIPLE else "info"
        if best is None:
            out.append(_make(
                ctx, "SW003", floor=floor,
                message=(f"{att.name}: head_dim {d} is not a multiple of {HEAD_DIM_MULTIPLE}"
                         f" and no head count of the {width}-wide attention gives one"),
                field=f"{att.name}.heads", value=heads, fix=None))
            continue
        h2, d2, new = best
        if d % HEAD_DIM_MIN_MULTIPLE == 0 and new >= old:
            continue  # fused-kernel head dim and no faster grouping: a choice, not a defect
        out.append(_make(
            ctx, "SW003", floor=floor,
            message=(f"{att.name}: head_dim {d} is not a multiple of {HEAD_DIM_MULTIPLE} "
                     f"(FlashAttention's fast paths are 64 and 128); use {h2} "
                     f"head{'s' if h2 != 1 else ''} of {d2}"),
            field=f"{att.name}.heads", value=heads, fix=h2, gemm_speedup=old / new,
            step_speedup=_trace_step(ctx, (old - new) * att.count, 0.0, "time"),
            kernel="attention", basis="time",
            detail=(f"attention batch {att.batch}, {heads} heads × {d}, seq {att.seq_len}"
                    f"{', causal' if att.causal else ''}: {old * att.count * 1e3:.2f} ms → "
                    f"{new * att.count * 1e3:.2f} ms per step")))
    return out


@_rule("SW004", "tokens-alignment")
def tokens_alignment(ctx: CheckContext) -> list[Finding]:
    """b·s (micro-batch × sequence length) a multiple of 64.

    Why: b·s is the M of every GEMM and the K of every weight-gradient GEMM (dW = Xᵀ·dY),
    where it is the contiguous dimension (co-design rule 3). Fix: the nearest sequence
    length that makes it one (for a ViT, whose tokens are fixed by the image, the next
    micro-batch). Speedup on the "throughput" basis (the tokens change).
    """
    b, s = ctx.micro_batch, ctx.seq_len
    if ctx.trace is not None:
        b = ctx.trace.micro_batch or 0
        s = ctx.trace.seq_len
    if not b or not s or (b * s) % TOKEN_MULTIPLE == 0:
        return []
    T = b * s
    note = ""
    vit = ctx.shape is not None and ctx.shape.arch == "vit"
    if vit:
        unit = TOKEN_MULTIPLE // math.gcd(s, TOKEN_MULTIPLE)
        b2 = _round_up(b + 1, unit)
        if b2 > 4 * b:  # settle for 16-byte alignment
            b2 = _round_up(b + 1, MIN_ALIGN // math.gcd(s, MIN_ALIGN))
        fld, value, fix, new_b, new_s = "micro_batch", b, b2, b2, s
        if b2 > 1.5 * b:
            note = "; part of the gain is the larger micro-batch itself"
    else:
        unit = TOKEN_MULTIPLE // math.gcd(b, TOKEN_MULTIPLE)
        lo, hi = (s // unit) * unit, _round_up(s, unit)
        cap = None
        if ctx.shape is not None and ctx.shape.position_embedding == "learned":
            cap = ctx.shape.max_position_embeddings
        fix = lo if lo > 0 and (s - lo <= hi - s or (cap is not None and hi > cap)) else hi
        fld, value, new_b, new_s = "seq_len", s, b, fix
    T2 = new_b * new_s
    kernel = step = None
    if ctx.trace is not None:
        tr = ctx.trace
        t0, t1, f0, f1 = _reprice(ctx, tr.gemms, lambda x: T2 if x == T else x)
        dt, df = t0 - t1, f1 - f0
        for att in tr.attentions:
            if att.seq_len == s and new_s != s:
                dt += (_attention_pair(ctx, att) - _attention_pair(ctx, att, seq_len=new_s)
                       ) * att.count
                df += (_attention_flops(att, tr.backward, new_s)
                       - _attention_flops(att, tr.backward)) * att.count
        kernel = (t0 / f0) / (t1 / f1) if t1 and f0 and f1 else None
        step = _trace_step(ctx, dt, df, "throughput")
    else:
        new = ctx.price(micro_batch=new_b, seq_len=new_s)
        kernel, step = _gain(ctx.estimate, new, ("qkv_proj", "out_proj", "mlp_up",
                                                  "mlp_gate_up", "mlp_down", "logits"),
                             "throughput")
    return [_make(
        ctx, "SW004", floor="warning" if T % MIN_ALIGN else "info",
        message=(f"micro_batch × seq_len = {b} × {s} = {T} is not a multiple of "
                 f"{TOKEN_MULTIPLE}: it is the M of every GEMM and the K of every "
                 f"weight-gradient GEMM; use {fld} {fix} ({new_b} × {new_s} = {T2}){note}"),
        field=fld, value=value, fix=fix, gemm_speedup=kernel, step_speedup=step,
        kernel="GEMMs", basis="throughput")]


@_rule("SW005", "heads-per-rank")
def heads_per_rank(ctx: CheckContext) -> list[Finding]:
    """(b·a)/t an integer: whole attention heads on every tensor-parallel rank.

    Why: the attention BMMs of a rank have batch b·a/t (co-design rule 4), and Megatron-style
    tensor parallelism gives each rank a/t whole heads: a head count that t does not divide
    fails at startup. Fix: the nearest head count that t divides (head dim a multiple of 64
    if possible), or a tp that divides a. Severity: error.
    """
    shape, t = ctx.shape, ctx.tp
    if shape is None or t <= 1 or shape.num_attention_heads % t == 0:
        return []
    a, b = shape.num_attention_heads, ctx.micro_batch
    options = (_head_options(shape, t) or
               _head_options(shape, t, min_multiple=HEAD_DIM_MIN_MULTIPLE))
    fix = min(options, key=lambda o: (abs(o[0] - a), o[0]))[0] if options else None
    divisors = [x for x in range(t - 1, 0, -1) if not tp_problems(shape, x)]
    alt = f"; or tp {divisors[0]}" if divisors else ""
    return [_make(
        ctx, "SW005", severity="error",
        message=(f"num_attention_heads {a} is not divisible by tp {t} ((b·a)/t = "
                 f"{b * a}/{t} is not an integer): tensor parallelism needs whole heads on "
                 f"each rank and the training fails at startup; use "
                 + (f"{fix} heads" if fix else "another head count") + alt),
        field="num_attention_heads", value=a, fix=fix,
        detail="no speedup: the current shape cannot run at this tp")]


@_rule("SW006", "tp-divisibility")
def tp_divisibility(ctx: CheckContext) -> list[Finding]:
    """h/t, KV heads/t, FFN/t and vocab/t integers (a/t is SW005).

    Why: Megatron-style tensor parallelism splits the QKV and MLP-up weights by columns, the
    output projection and MLP-down by rows, and the vocabulary across ranks; a size that t
    does not divide crashes the training (ColossalAI #6167, vLLM #440, Megatron-LM #1754 for
    the vocabulary). Fix: the nearest size t divides (vocabulary and FFN: the next multiple
    of 64·t, so each rank's slice stays aligned). Severity: error.
    """
    shape, t = ctx.shape, ctx.tp
    if shape is None or t <= 1:
        return []
    out = []
    for name, value in tp_problems(shape, t):
        if name == "num_attention_heads":
            continue  # SW005
        fix: int | None
        if name == "hidden_size":
            unit = math.lcm(t, shape.num_attention_heads, HIDDEN_MULTIPLE)
            fix = _round_up(value, unit)
        elif name == "num_key_value_heads":
            a = shape.num_attention_heads
            if value == a:
                continue  # multi-head attention: SW005 says it
            options = [x for x in range(t, a + 1, t) if a % x == 0]
            fix = min(options, key=lambda x: (abs(x - value), x)) if options else None
        else:  # intermediate_size, vocab_size
            fix = _round_up(value, VOCAB_MULTIPLE * t)
        crash = {"vocab_size": "the vocab-parallel embedding and logits",
                 "intermediate_size": "the column-parallel MLP",
                 "num_key_value_heads": "the K/V projections (whole K/V groups per rank)",
                 "hidden_size": "the row-parallel projections"}[name]
        out.append(_make(
            ctx, "SW006", severity="error",
            message=(f"{name} {value} is not divisible by tp {t}: {crash} cannot split "
                     f"evenly and the training fails; use "
                     + (f"{fix}" if fix is not None else f"a tp that divides {value}")),
            field=name, value=value, fix=fix,
            detail="no speedup: the current shape cannot run at this tp"))
    return out


@_rule("SW007", "pipeline-layers")
def pipeline_layers(ctx: CheckContext) -> list[Finding]:
    """Layers divisible by the pipeline stages.

    Why: pipeline parallelism gives each stage L/p layers (Megatron-LM requires it unless
    told otherwise); an uneven split fails or leaves the slowest stage setting the pace for
    all. Fix: the nearest layer count p divides. Severity: error.
    """
    shape, p = ctx.shape, ctx.pipeline_stages
    if shape is None or p <= 1 or shape.num_hidden_layers % p == 0:
        return []
    L = shape.num_hidden_layers
    lo, hi = (L // p) * p, _round_up(L, p)
    fix = lo if lo > 0 and L - lo <= hi - L else hi
    divisors = [x for x in range(2, min(L, 64) + 1) if L % x == 0]
    return [_make(
        ctx, "SW007", severity="error",
        message=(f"num_hidden_layers {L} is not divisible by {p} pipeline stages: the "
                 f"stages cannot hold equal layers; use {fix} layers"
                 + (f" or {', '.join(map(str, divisors[:6]))} stages" if divisors else "")),
        field="num_hidden_layers", value=L, fix=fix)]


def _mlp_time(ctx: CheckContext, shape: ModelShape, f: int) -> float:
    """Seconds of the MLP GEMMs (forward and backward) of one layer at FFN size f."""
    T, h, t = _tokens(ctx), shape.hidden_size, ctx.tp
    up = 2 * f // t if shape.activation == "swiglu" else f // t
    return _triple(ctx, T, up, h) + _triple(ctx, T, h, f // t)


@_rule("SW008", "ffn-size")
def ffn_size(ctx: CheckContext) -> list[Finding]:
    """FFN size a multiple of 64 (64·tp per rank), and the fastest near its value.

    Why: f (f/t per rank) is the N of the MLP-up GEMM and the K of MLP-down, the largest
    GEMMs of a layer. For SwiGLU, 8/3·h taken literally is misaligned: at h=4096,
    f=10922 ran at 272.7 TFLOP/s on H100 against 398.4 for f=10944 (co-design rule 6).
    Fix: the size within 5% whose MLP GEMMs the cost model prices at the most TFLOP/s
    (the nearest of those within 1% of the best)
    (reported for an aligned size only when it gains at least 5%). Speedup on the
    "throughput" basis (the FLOPs change).
    """
    shape, t = ctx.shape, ctx.tp
    if shape is None or ctx.estimate is None or shape.ffn_size % t:
        return []
    f, h = shape.ffn_size, shape.hidden_size
    unit = VOCAB_MULTIPLE * t
    aligned = f % unit == 0
    candidates = set(_window(f, unit, FFN_WINDOW))
    candidates.add(_round_up(f, unit))
    if f >= unit:
        candidates.add((f // unit) * unit)
    scores = {c: _mlp_time(ctx, shape, c) / c for c in candidates}
    base = _mlp_time(ctx, shape, f) / f
    fastest = min(scores.values())
    # the nearest size within FFN_TOLERANCE of the fastest: a fix should move the model least
    best = min((c for c in scores if scores[c] <= fastest * (1 + FFN_TOLERANCE)),
               key=lambda c: (abs(c - f), c))
    gain = base / scores[best]
    if aligned and (best == f or gain < FFN_MIN_GAIN):
        return []
    names = ("mlp_up", "mlp_gate_up", "mlp_down")
    new = ctx.price(shape.replace(intermediate_size=best))
    kernel, step = _gain(ctx.estimate, new, names, "throughput")
    ratio = f"{f / h:.3f}·h"
    if shape.activation == "swiglu":
        ratio += f"; 8/3·h = {8 * h / 3:.1f}"
    why = (f"not a multiple of {unit}" + (f" (64 × tp {t})" if t > 1 else "") if not aligned
           else f"aligned, but its MLP GEMMs reach {1 / gain:.0%} of the TFLOP/s they reach "
           f"at {best}")
    return [_make(
        ctx, "SW008", floor="warning" if (f // t) % MIN_ALIGN else "info",
        message=(f"intermediate_size {f} ({ratio}) is {why}; use {best}, the size within "
                 f"{FFN_WINDOW:.0%} whose MLP GEMMs run (nearly) fastest per FLOP"),
        field="intermediate_size", value=f, fix=best, gemm_speedup=kernel, step_speedup=step,
        kernel="MLP GEMMs", basis="throughput",
        detail=f"{len(candidates)} sizes priced, multiples of {unit} within {FFN_WINDOW:.0%}")]


#: What each GEMM dimension of a layer op is, for messages.
_OP_DIMS: dict[str, tuple[str, str, str]] = {
    "qkv_proj": ("b·s", "(a+2g)·d/t", "h"),
    "out_proj": ("b·s", "h", "a·d/t"),
    "mlp_up": ("b·s", "f/t", "h"),
    "mlp_gate_up": ("b·s", "2f/t", "h"),
    "mlp_down": ("b·s", "h", "f/t"),
    "logits": ("b·s", "v/t", "h"),
    "patch_embed": ("b·patches", "h", "c·p²"),
    "classifier": ("b", "labels", "h"),
}


def _best_wave_fix(ctx: CheckContext, m: int, n: int, k: int, batch: int,
                   cost: Callable[[int, int, int], float]) -> tuple[str, int, float] | None:
    """(dim, new size, per-FLOP gain) of the best size within WAVE_WINDOW for one dim."""
    base = cost(m, n, k) / (m * n * k)
    best = None
    for dim, size in (("n", n), ("k", k)):  # b·s is SW004's and the data's, not the model's
        if size < 2 * VOCAB_MULTIPLE:
            continue
        for c in _window(size, VOCAB_MULTIPLE, WAVE_WINDOW):
            if c == size:
                continue
            dims = {"m": m, "n": n, "k": k, dim: c}
            score = cost(dims["m"], dims["n"], dims["k"]) / (dims["m"] * dims["n"] * dims["k"])
            gain = base / score
            if best is None or gain > best[2] or (gain == best[2] and abs(c - size) <
                                                  abs(best[1] - size)):
                best = (dim, c, gain)
    return best if best is not None and best[2] >= WAVE_MIN_GAIN else None


@_rule("SW009", "wave-quantization")
def wave_quantization(ctx: CheckContext) -> list[Finding]:
    """Every GEMM: a last wave of tiles at least half full.

    Why: a GEMM's output tiles run in waves of (SMs × CTAs per SM); a partial last wave costs
    a whole one (co-design.md: 109 tiles on A100's 108 SMs take two waves). Flagged when the
    last wave is under 50% full and an N or K within 5% (multiples of 64) runs at least 5%
    more TFLOP/s by the cost model, for at least 0.5% of the step. Fix: that size for that
    GEMM dimension (the M, b·s, is SW004's). Speedup on the "throughput" basis, counting
    this GEMM's change alone. Aligned GEMMs only (misaligned ones are the alignment rules').
    """
    threshold = WAVE_FILL_THRESHOLD
    out = []
    rows: list[tuple[str, int, int, int, int, int]] = []  # name, m, n, k, batch, count
    if ctx.trace is not None:
        for g in ctx.trace.gemms:
            if g.phase == "forward":
                rows.append((g.name or "(unnamed)", g.m, g.n, g.k, g.batch, g.count))
    elif ctx.estimate is not None:
        for op in ctx.estimate.breakdown:
            if op.kind == "gemm" and op.phase == "forward":
                m, n, k = op.shape
                rows.append((op.name, m, n, k, 1, op.count))
    for name, m, n, k, batch, count in rows:
        if n % ctx.align or k % ctx.align:
            continue
        ex = explain_gemm(m, n, k, gpu=ctx.gpu, dtype=ctx.dtype, batch=batch, suggest=False)
        if ex.last_wave_fill >= threshold or ex.bound != "compute":
            continue

        def cost(mm: int, nn: int, kk: int, _b: int = batch) -> float:
            return _triple(ctx, mm, nn, kk, _b)

        fix = _best_wave_fix(ctx, m, n, k, batch, cost)
        if fix is None:
            continue
        dim, size, gain = fix
        old_size = [m, n, k]["mnk".index(dim)]
        if ctx.trace is not None:  # the GEMM as traced, forward and backward
            group = [g for g in ctx.trace.gemms if (g.name or "(unnamed)") == name]
            t0, t1, f0, f1 = _reprice(ctx, group,
                                      lambda x, _o=old_size, _s=size: _s if x == _o else x)
            gain = (t0 / f0) / (t1 / f1)
            step = _trace_step(ctx, t0 - t1, f1 - f0, "throughput")
        else:
            new = {"m": m, "n": n, "k": k, dim: size}
            t0, t1 = cost(m, n, k), cost(new["m"], new["n"], new["k"])
            f0 = 3 * 2.0 * batch * m * n * k
            f1 = 3 * 2.0 * batch * new["m"] * new["n"] * new["k"]
            est = ctx.estimate
            assert est is not None
            T, F = est.step_time_s, _rank_flops(est)
            step = (T / F) / ((T - (t0 - t1) * count) / (F + (f1 - f0) * count))
        if step is None or step < WAVE_MIN_STEP_GAIN or gain < WAVE_MIN_GAIN:
            continue
        meaning = _OP_DIMS.get(name, ("m", "n", "k"))["mnk".index(dim)]
        label = f"{dim} ({meaning})" if meaning != dim else dim
        bm, bn = ex.tile
        out.append(_make(
            ctx, "SW009",
            message=(f"{name} GEMM {m}×{n}×{k}: {ex.tiles} tiles of {bm}×{bn} on "
                     f"{ex.slots} slots make {ex.waves} waves, the last {ex.last_wave_fill:.0%}"
                     f" full; {label} {size} instead of {old_size} fills them better"),
            field=f"{name}.{dim}", value=old_size, fix=size,
            gemm_speedup=gain, step_speedup=step, kernel=f"{name} GEMM", basis="throughput",
            detail=("a GEMM-level fix: the model field behind it also moves other GEMMs"
                    if ctx.trace is None else "")))
    return out


@_rule("SW010", "tp-oversized")
def tp_oversized(ctx: CheckContext) -> list[Finding]:
    """Tensor-parallel size no larger than memory needs.

    Why: every tensor-parallel rank adds two all-reduces per layer and shrinks each GEMM
    by t (co-design rule 5: t as small as possible). Flagged when a smaller t that splits the
    shape still fits the step in 90% of the GPU's memory (weights, gradients, Adam states
    and activations; no ZeRO, no pipeline: skipped when pipeline stages > 1). Fix: that t.
    Speedup: tokens/s per GPU.
    """
    shape, t, est = ctx.shape, ctx.tp, ctx.estimate
    if shape is None or t <= 1 or est is None or ctx.pipeline_stages > 1:
        return []
    budget = MEMORY_HEADROOM * ctx.gpu.memory_gb * 1e9
    for t2 in range(1, t):
        if t % t2 or tp_problems(shape, t2):
            continue
        new = ctx.price(tp=t2)
        if new is None or new.memory_bytes > budget:
            continue
        _, step = _gain(est, new, (), "tokens-per-gpu")
        if step is None or step <= 1:
            return []
        return [_make(
            ctx, "SW010",
            message=(f"tp {t} is more than memory needs: at tp {t2} a step takes "
                     f"{new.memory_bytes / 1e9:.1f} GB of the {ctx.gpu.memory_gb:g} GB, "
                     "and each GPU does more with fewer all-reduces"),
            field="tp", value=t, fix=t2, step_speedup=step, basis="tokens-per-gpu",
            detail=(f"memory per GPU {est.memory_bytes / 1e9:.1f} GB at tp {t}, "
                    f"{new.memory_bytes / 1e9:.1f} GB at tp {t2} (budget "
                    f"{MEMORY_HEADROOM:.0%}); tokens/s per GPU {est.tokens_per_s:,.0f} → "
                    f"{new.tokens_per_s:,.0f}"))]
    return []


@_rule("SW011", "gemm-alignment")
def gemm_alignment(ctx: CheckContext) -> list[Finding]:
    """Every traced GEMM's N and K multiples of 64 (the GPU's 128-byte alignment).

    Why: N and K are the contiguous dimensions of the row-major operands; sizes that are not
    multiples of 128 bytes use narrower tensor-core loads, and those that are not multiples
    of 16 bytes fall back further (co-design.md, "Hardware facts"). One finding per
    misaligned size (a model's hidden size shows up in most of its GEMMs). Fix: pad that
    size to the next multiple (zero padding does not change the result). Speedup: every
    traced GEMM with that size, same work. Reported when the padding is faster by the cost
    model, or when the size misses 16-byte alignment. Traced modules only: for a ModelShape
    the field rules cover every GEMM dimension.
    """
    tr = ctx.trace
    if tr is None:
        return []
    vocab = _trace_vocab(tr)
    align = ctx.align
    users: dict[int, list[str]] = {}
    for g in tr.gemms:
        if g.phase != "forward":
            continue
        for size in (g.n, g.k):
            if size % align and not (size == vocab and vocab % VOCAB_MULTIPLE):
                names = users.setdefault(size, [])
                if (g.name or "(unnamed)") not in names:
                    names.append(g.name or "(unnamed)")
    out = []
    for size, names in sorted(users.items()):
        fix = _round_up(size, align)
        t0, t1, _, _ = _reprice(ctx, tr.gemms, lambda x, _s=size, _f=fix: _f if x == _s else x)
        gain = t0 / t1 if t1 else None
        if size % MIN_ALIGN == 0 and (gain is None or gain < 1.01):
            continue  # 16-byte aligned and padding buys nothing by the cost model
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        others = sorted(x for x in users if x != size)
        detail = (f"these GEMMs have other misaligned sizes ({', '.join(map(str, others))}): "
                  "pad them together to see the whole gain" if others and
                  (gain is None or gain < 1.01) else "")
        out.append(_make(
            ctx, "SW011", floor="warning" if size % MIN_ALIGN else "info",
            message=(f"GEMM size {size} (in or out features of {shown}) is not a multiple of "
                     f"{align}" + ("" if size % MIN_ALIGN == 0 else
                                   " nor of 8 (16 bytes): tensor cores fall back to narrow "
                                   "loads") + f"; pad it to {fix}"),
            field="gemm_size", value=size, fix=fix, gemm_speedup=gain,
            step_speedup=_trace_step(ctx, t0 - t1, 0.0, "time"),
            kernel=f"GEMMs with {size}", basis="time", detail=detail))
    return out
