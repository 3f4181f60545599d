"""The machinery of the shape rules: findings, the check context, the :class:`Rule` entry,
the registry and the run.

A rule is declared once, as a :class:`Rule` (its id, name, field, predicate, fix, how the fix
is priced, its message), and registered with :func:`register`; the package docstring
(:mod:`shapewise.check.rules`) says how to add one. Each finding names the field, its value,
the fix (the new value), and what the fix buys according to the cost model:

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

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shapewise.check.trace import Trace
from shapewise.cost.price import price as price_op
from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU
from shapewise.model.shape import ModelShape
from shapewise.ops import Attention, Gemm
from shapewise.step import Estimate, estimate

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
Basis = Literal["time", "throughput", "tokens-per-gpu"]

# ----------------------------------------------------------------------- thresholds
#: A fix that buys at least this fraction of the step is a warning (below: info). A judgment
#: call, stated so it can be argued with: it flags GPT-2's vocabulary (3.5-7% of the step)
#: and leaves Llama-2-7B's aligned shapes quiet.
WARNING_STEP_LOSS = 0.02
#: An info finding must buy at least this fraction of the step to be shown: the report
#: prints one decimal of a percent, and a gain that rounds to "±0%" is no advice.
MIN_INFO_STEP_GAIN = 0.0005
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
    ep: int = 1
    """expert-parallel size (mixtures of experts: E/ep experts per rank)"""
    shape: ModelShape | None = None
    trace: Trace | None = None
    plan: Any = None
    """the parallel plan (``shapewise.Plan``) the step runs under; None: one GPU as above"""
    attention_backend: str | None = None
    """the attention kernel the run uses (None: PyTorch's SDPA dispatch)"""
    estimate: Estimate | None = None
    """the step of ``shape`` as given; None when it cannot run (tp does not divide)"""
    note: str = ""
    """appended to every finding's detail (e.g. that the GPU is a default)"""
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def price(self, shape: ModelShape | None = None, *, tp: int | None = None,
              micro_batch: int | None = None, seq_len: int | None = None,
              attention_backend: str | None = None) -> Estimate | None:
        """The estimate of a variant of this context's shape; None if it cannot run."""
        shape = shape if shape is not None else self.shape
        if shape is None:
            return None
        ab = attention_backend or self.attention_backend
        key = (shape, tp or self.tp, micro_batch or self.micro_batch, seq_len or self.seq_len)
        if ab != self.attention_backend:
            key += (ab,)  # type: ignore[assignment]
        if key not in self._cache:
            try:
                if self.plan is not None:  # the same plan at the changed tp / micro-batch
                    plan = dataclasses.replace(self.plan, tp=key[1], micro_batch=key[2])
                    self._cache[key] = estimate(shape, gpu=self.gpu, seq_len=key[3],
                                                dtype=self.dtype, plan=plan,
                                                attention_backend=ab)
                else:
                    self._cache[key] = estimate(shape, gpu=self.gpu, micro_batch=key[2],
                                                seq_len=key[3], tp=key[1], dtype=self.dtype,
                                                attention_backend=ab)
            except InputError:
                self._cache[key] = None
        return self._cache[key]

    def gemm(self, m: int, n: int, k: int, batch: int = 1) -> float:
        """Predicted seconds of one GEMM on this context's GPU and dtype (the shared op
        vocabulary, priced by :func:`shapewise.cost.price.price`)."""
        return price_op(Gemm(m=m, n=n, k=k, batch=batch, dtype=self.dtype), self.gpu)

    def attention(self, *, batch: int, heads: int, seq_len: int, head_dim: int,
                  kv_heads: int | None, seq_len_kv: int, causal: bool,
                  backward: bool = False) -> float:
        """Predicted seconds of one fused attention call (forward, or its backward)."""
        return price_op(Attention(batch=batch, heads=heads, seq_len=seq_len,
                                  head_dim=head_dim, kv_heads=kv_heads, seq_len_kv=seq_len_kv,
                                  causal=causal, backward=backward, dtype=self.dtype),
                        self.gpu)

    def price_change(self, change: Change) -> Estimate | None:
        """The step with ``change`` applied; None when the changed shape is not a valid
        shape or cannot run at these settings."""
        shape = self.shape
        if shape is not None and change.shape:
            try:
                shape = shape.replace(**change.shape)
            except InputError:
                return None
        return self.price(shape, tp=change.tp, micro_batch=change.micro_batch,
                          seq_len=change.seq_len)

    def value_of(self, name: str) -> Any:
        """The current value of ``name``: a field of the shape, else a run setting."""
        if self.shape is not None and hasattr(self.shape, name):
            return getattr(self.shape, name)
        return getattr(self, name)

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
                  pipeline_stages: int = 1, note: str = "", plan: Any = None,
                  attention_backend: str | None = None,
                  ep: int = 1) -> CheckContext:
    """A context for ``shape``; prices it unless tensor parallelism cannot split it.

    Raises InputError for settings no rule can judge (a sequence longer than learned
    positions allow, a dtype the GPU lacks), naming the setting.
    """
    from shapewise.model.shape import resolve_seq_len

    if shape.arch != "vit" and seq_len is None:
        seq_len = shape.max_position_embeddings
    s = resolve_seq_len(shape, seq_len)
    est = None
    if plan is not None:  # the plan's dims are the run settings (shapewise.plan validates)
        tp, micro_batch, pipeline_stages = plan.tp, plan.micro_batch, plan.pp
        ep = getattr(plan, "ep", ep)
    # an expert count the ep size does not divide cannot run (SW013 says so)
    ep_ok = not shape.is_moe or shape.num_experts % ep == 0  # type: ignore[operator]
    if (not tp_problems(shape, tp) and ep_ok
            and (plan is None or plan.pp <= shape.num_hidden_layers)):
        est = (estimate(shape, gpu=gpu, seq_len=s, dtype=dtype, plan=plan,
                        attention_backend=attention_backend) if plan is not None
               else estimate(shape, gpu=gpu, micro_batch=micro_batch, seq_len=s, tp=tp,
                             dtype=dtype, attention_backend=attention_backend, ep=ep))
    ctx = CheckContext(gpu=gpu, dtype=dtype, tp=tp, micro_batch=micro_batch, seq_len=s,
                       pipeline_stages=pipeline_stages, shape=shape, plan=plan, estimate=est,
                       note=note, attention_backend=attention_backend, ep=ep)
    if est is not None:
        ctx._cache[(shape, tp, micro_batch, s)] = est
    return ctx


# ------------------------------------------------------------------------ the entry
@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What a fix changes, so that it can be priced: shape fields and run settings."""

    shape: Mapping[str, Any] = field(default_factory=dict)
    """ModelShape fields and their new values (``{"vocab_size": 50304}``)"""
    tp: int | None = None
    """a new tensor-parallel size (None: unchanged)"""
    micro_batch: int | None = None
    """a new micro-batch (None: unchanged)"""
    seq_len: int | None = None
    """a new sequence length (None: unchanged)"""


def _always(ctx: CheckContext) -> bool:
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One shape rule, declared: what it judges, when it fires, the fix, and its price.

    The usual rule is the fields from ``field`` to ``detail``: when ``applies`` holds, the
    finding proposes ``fix(ctx)`` for ``field``; ``change`` says what the fix changes, the
    step is priced again with it (``CheckContext.price_change``, i.e. ``shapewise.estimate``
    over the shared ops) and the gain is measured on ``kernels`` and on the step, on
    ``basis``. A rule whose findings do not fit that mould (one per GEMM, one per size, a
    fix chosen among priced candidates) gives ``find`` instead; a rule that also judges a
    traced module gives ``traced``.
    """

    id: str
    """stable id, 'SW001': never renumbered nor reused (docs/checks.md lists them)"""
    name: str
    """short name, 'vocab-alignment'; its function is ``vocab_alignment``"""
    doc: str
    """what the rule asks for, 'Why:' with sources, 'Fix:' and the speedup's basis; it
    becomes the rule function's docstring"""
    field: str = ""
    """the setting judged, as the model spells it: a ModelShape field or a run setting
    ('vocab_size', 'tp'); the finding's value is read from it"""
    applies: Callable[[CheckContext], bool] = _always
    """the predicate: True when the context breaks the rule (it reads what it needs and
    checks it is there: a shape, an estimate...)"""
    fix: Callable[[CheckContext], Any] | None = None
    """the value to use instead; None (or returning None): no single value fixes it"""
    severity: Severity | Callable[[CheckContext, Any], Severity] = "info"
    """'error': the training cannot run (never priced); otherwise the floor (a callable of
    the context and the fix when it depends on them): a fix buying at least
    WARNING_STEP_LOSS of the step is a warning whatever the floor"""
    change: Callable[[CheckContext, Any], Change] | None = None
    """what the fix changes, to price it; None: unpriced"""
    kernels: tuple[str, ...] = ()
    """the step's ops (``Estimate.breakdown`` names) whose time makes ``gemm_speedup``"""
    kernel: str = ""
    """those ops in words, for the finding ('logits GEMM')"""
    basis: Basis = "time"
    """'time' (same work), 'throughput' (per model FLOP) or 'tokens-per-gpu'"""
    only_if_faster: bool = False
    """no finding when the priced fix does not speed up the step"""
    message: Callable[[CheckContext, Any], str] | None = None
    """what is wrong, why, and the fix, in one sentence (of the context and the fix)"""
    detail: Callable[[CheckContext, Any, Estimate | None], str] | None = None
    """the numbers behind it (of the context, the fix and the changed step)"""
    find: Callable[[CheckContext], list[Finding]] | None = None
    """the whole rule as a function, for findings that do not fit the fields above"""
    traced: Callable[[CheckContext], list[Finding]] | None = None
    """the rule on a traced module (None: traced modules are not judged by it)"""

    def __call__(self, ctx: CheckContext) -> list[Finding]:
        """Every finding of this rule in ``ctx``."""
        if ctx.trace is not None:
            return self.traced(ctx) if self.traced is not None else []
        if self.find is not None:
            return self.find(ctx)
        if self.message is None or not self.applies(ctx):  # no message: traced modules only
            return []
        fix = self.fix(ctx) if self.fix is not None else None
        kernel = step = new = None
        if self.change is not None and fix is not None:
            new = ctx.price_change(self.change(ctx, fix))
            kernel, step = speedups(ctx.estimate, new, self.kernels, self.basis)
            if self.only_if_faster and (step is None or step <= 1):
                return []
        level = self.severity(ctx, fix) if callable(self.severity) else self.severity
        return [make_finding(
            ctx, self.id, severity="error" if level == "error" else None, floor=level,
            message=self.message(ctx, fix), field=self.field, value=ctx.value_of(self.field),
            fix=fix, gemm_speedup=kernel, step_speedup=step, kernel=self.kernel,
            basis=self.basis,
            detail=self.detail(ctx, fix, new) if self.detail is not None else "")]


# ---------------------------------------------------------------------------- registry
RuleFn = Callable[[CheckContext], list[Finding]]
#: rule id -> the rule as a function of a context (its docstring says what, why and the
#: fix), in id order
RULES: dict[str, RuleFn] = {}
#: rule id -> short name
RULE_NAMES: dict[str, str] = {}
#: rule id -> its declared entry
RULE_ENTRIES: dict[str, Rule] = {}


def register(rule: Rule) -> RuleFn:
    """Add ``rule`` to the registry; returns it as a function, named after the rule
    (``vocab-alignment`` -> ``vocab_alignment``) and documented with its ``doc``."""
    if rule.id in RULE_ENTRIES:
        raise ValueError(f"{rule.id}: already registered (ids are never reused)")
    if "Why" not in rule.doc or "Fix" not in rule.doc:
        raise ValueError(f"{rule.id}: its doc must say 'Why' and 'Fix'")
    if rule.message is None and rule.find is None and rule.traced is None:
        raise ValueError(f"{rule.id}: a rule needs a message, a find or a traced function")

    def check(ctx: CheckContext) -> list[Finding]:
        return rule(ctx)

    check.__name__ = check.__qualname__ = rule.name.replace("-", "_")
    check.__doc__ = rule.doc
    RULE_ENTRIES[rule.id] = rule
    RULES[rule.id] = check
    RULE_NAMES[rule.id] = rule.name
    for table in (RULE_ENTRIES, RULES, RULE_NAMES):  # id order, whichever module came first
        for key in sorted(table):
            table[key] = table.pop(key)  # type: ignore[attr-defined]
    return check


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
    it is dropped, and so is one whose gain rounds to nothing where it is shown (under
    MIN_INFO_STEP_GAIN, printed "±0%"). (A warning or error keeps its fix: it is there for
    a reason the price does not cover, e.g. a size below 16-byte alignment, or a split that
    cannot run.)"""
    return (f.severity == "info" and f.fix is not None and f.step_speedup is not None
            and f.step_speedup < 1.0 + MIN_INFO_STEP_GAIN)


# ----------------------------------------------------------------------------- helpers
def severity_for(step: float | None, *, floor: Severity = "info") -> Severity:
    """``floor``, raised to 'warning' when the step speedup saves WARNING_STEP_LOSS."""
    level = 1 if step is not None and step > 1 and 1 - 1 / step >= WARNING_STEP_LOSS else 0
    return SEVERITIES[max(level, SEVERITIES.index(floor))]


def make_finding(ctx: CheckContext, rule_id: str, *, severity: Severity | None = None,
                 floor: Severity = "info", detail: str = "", **kw: Any) -> Finding:
    """A finding of ``rule_id`` priced on ``ctx``'s GPU, its severity from the step speedup
    (at least ``floor``) unless given, the context's note appended to its detail."""
    sev = severity or severity_for(kw.get("step_speedup"), floor=floor)
    notes = "; ".join(x for x in (detail, ctx.note) if x)
    return Finding(rule_id=rule_id, severity=sev, detail=notes, gpu=ctx.gpu.id, **kw)


def round_up(x: int, multiple: int) -> int:
    """The least multiple of ``multiple`` that is >= ``x``."""
    return -(-x // multiple) * multiple


def ops_time(est: Estimate, names: Iterable[str]) -> float:
    """Seconds per step of the ops called ``names`` (all their launches and phases)."""
    names = tuple(names)
    return sum(op.total_s for op in est.breakdown if op.name in names)


def _ops_flops(est: Estimate, names: tuple[str, ...]) -> float:
    return sum(op.flops * op.count for op in est.breakdown if op.name in names)


def rank_flops(est: Estimate) -> float:
    """FLOPs of one rank's step (every op, every launch)."""
    return sum(op.flops * op.count for op in est.breakdown)


def speedups(old: Estimate | None, new: Estimate | None, names: Iterable[str],
         basis: Basis) -> tuple[float | None, float | None]:
    """(kernel speedup, step speedup) of ``new`` over ``old`` on ``basis``."""
    if old is None or new is None:
        return None, None
    names = tuple(names)
    t_old, t_new = ops_time(old, names), ops_time(new, names)
    if basis == "tokens-per-gpu":
        return None, new.tokens_per_s / old.tokens_per_s
    if basis == "time":
        kernel = t_old / t_new if names and t_new > 0 else None
        return kernel, old.step_time_s / new.step_time_s
    f_old, f_new = _ops_flops(old, names), _ops_flops(new, names)
    kernel = (t_old / f_old) / (t_new / f_new) if names and f_old and f_new and t_new else None
    step = (old.step_time_s / rank_flops(old)) / (new.step_time_s / rank_flops(new))
    return kernel, step


def sizes_near(center: int, unit: int, frac: float, *, minimum: int | None = None) -> list[int]:
    """Multiples of ``unit`` within ``frac`` of ``center`` (at most MAX_CANDIDATES, evenly
    thinned), never below ``minimum`` (default: unit)."""
    lo = max(minimum or unit, round_up(int(center * (1 - frac)), unit))
    hi = max(lo, (int(center * (1 + frac)) // unit) * unit)
    stride = max(1, (hi - lo) // unit // MAX_CANDIDATES + 1) * unit
    return list(range(lo, hi + 1, stride))


def triple(ctx: CheckContext, m: int, n: int, k: int, batch: int = 1) -> float:
    """A forward GEMM (m, n, k) and its two backward GEMMs (step.py's convention)."""
    fwd = Gemm(m=m, n=n, k=k, batch=batch, dtype=ctx.dtype)
    return sum(price_op(g, ctx.gpu) for g in (fwd, *fwd.backward()))


def tokens_of(ctx: CheckContext) -> int:
    """b·s: the tokens of one micro-batch."""
    return ctx.micro_batch * (ctx.seq_len or 1)
