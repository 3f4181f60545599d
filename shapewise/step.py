"""One training step as it runs under a parallel plan: typed ops, each priced by ``price()``.

Per GPU (Megatron-LM layout: column-parallel QKV and MLP-up, row-parallel output projection
and MLP-down, vocab-parallel logits), with T = micro_batch · seq_len / cp tokens, h hidden,
a heads, g KV heads, d head dim, f FFN size, v vocabulary, t TP size:

========================  ============================  ======================================
op                        forward GEMM (m, n, k)        notes
========================  ============================  ======================================
QKV projection            (T, (a + 2g)·d / t, h)        GQA shrinks K and V to g·d columns
attention                 fused kernel, a/t heads       causal for decoders, not for ViT;
                                                        1/cp of the work per context rank
output projection         (T, h, a·d / t)               + all-reduce of T·h when t > 1
MLP up (GELU)             (T, f / t, h)                 (sequence parallel: all-gather +
MLP gate+up (SwiGLU)      (T, 2f / t, h)                reduce-scatter instead)
MLP down                  (T, h, f / t)
logits (last stage)       (T, v / t, h)                 + cross-entropy over T·v/t in fp32
========================  ============================  ======================================

Every forward GEMM has two backward GEMMs of the same FLOPs (``Gemm.backward()``); attention
backward has its own kernel model; memory-bound ops are bytes over bandwidth. Recompute
replays each layer's forward ('full') or the attention forward ('selective') in the
backward; its time is counted, its FLOPs are not model FLOPs (MFU ignores them).

The step (one optimizer step, ``m`` = gradient-accumulation micro-batches, ``p`` stages,
``v`` virtual stages, F_i + B_i one micro-batch's forward and backward on stage i):

    step = m · max_i(F_i + B_i)                     compute, serial TP comm, imbalance
         + (p − 1)/v · max_i(F_i + B_i)             the 1F1B pipeline bubble
         + exposed DP/FSDP/CP comm + p2p            what compute cannot hide (below)
         + optimizer                                Adam over this GPU's shard (bytes / BW)
         + m · launches · host_overhead + fixed     host overheads (docs/cost-model.md)

A collective that overlaps a compute window W (DP/FSDP per bucket, CP ring under attention)
is exposed for max(c / units, c − η·W): the last bucket never hides, and η, the share of the
window that communication can use, is fitted (docs/cost-model.md). TP is serial.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shapewise.cost.defaults import calibration_of
from shapewise.cost.price import price
from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, GPU
from shapewise.model.shape import ModelShape
from shapewise.ops import Attention, Collective, Gemm, MemoryBound, Op
from shapewise.plan import Plan, Setup, make_setup, ranks_per_node
from shapewise.step_params import OPTIMIZER_STEP_BYTES, StepParams, step_params

Kind = Literal["gemm", "attention", "memory", "comm"]
Phase = Literal["forward", "backward", "recompute"]
GIB = 2**30


@dataclass(frozen=True, slots=True)
class OpCost:
    """One kernel of the step: its shape, how often it runs per step, and its time."""

    name: str
    kind: Kind
    phase: Phase
    shape: tuple[int, ...]
    """GEMM (m, n, k); attention (batch, heads, seq, head_dim); bytes for memory/comm"""
    count: int
    """launches per optimizer step on this GPU (the slowest pipeline stage)"""
    time_s: float
    """seconds per launch"""
    flops: float
    """model FLOPs per launch (0 for memory-bound ops, communication and overheads)"""

    @property
    def total_s(self) -> float:
        return self.time_s * self.count


@dataclass(frozen=True, slots=True)
class Estimate:
    """Predicted optimizer step of one model shape under one plan (figures per GPU)."""

    shape: ModelShape
    gpu: str
    dtype: str
    micro_batch: int
    seq_len: int
    tp: int
    recompute: bool
    """any activation recompute (``plan.recompute`` says which)"""
    step_time_s: float
    """one optimizer step (``grad_accum`` micro-batches, all stages), seconds"""
    tokens_per_s: float
    """training tokens per second per GPU"""
    model_tflops: float
    """model FLOPs (no recompute) per second per GPU, TFLOP/s"""
    mfu: float
    """model_tflops over the GPU's dense peak for dtype (0..1)"""
    memory_bytes: int
    """peak bytes per GPU: the maximum over pipeline stages, allocator allowance included"""
    memory: dict[str, int]
    """the peak stage's memory by part (weights, gradients, ..., allocator, total)"""
    breakdown: tuple[OpCost, ...]
    """the kernels of the slowest stage (serial TP collectives included); the optimizer,
    overheads, exposed DP/CP/PP communication and the bubble are in ``categories``"""
    flops_per_step: float
    """model FLOPs of one optimizer step of one data-parallel replica"""
    calibration: str
    notes: tuple[str, ...] = field(default=())
    plan: Plan = field(default_factory=Plan)
    categories: dict[str, float] = field(default_factory=dict)
    """seconds per step: compute, comm (exposed, serial TP included), bubble, imbalance,
    optimizer, overhead; they sum to step_time_s"""
    exposed_comm: dict[str, float] = field(default_factory=dict)
    """exposed communication seconds per step by group and kind ('tp_allreduce', ...)"""
    stage_memory: tuple[int, ...] = field(default=())
    """peak bytes per GPU of each pipeline stage"""
    fits: bool = True
    """the peak stage fits the GPU's memory"""
    sustained_clock: float = 1.0
    """compute-clock factor applied to GEMMs and attention (a long run's sustained rate)"""

    @property
    def n_gpus(self) -> int:
        return self.plan.n_gpus

    @property
    def bubble_fraction(self) -> float:
        return self.categories.get("bubble", 0.0) / self.step_time_s

    @property
    def exposed_comm_fraction(self) -> float:
        return sum(self.exposed_comm.values()) / self.step_time_s

    def by_op(self) -> list[dict[str, Any]]:
        """The breakdown merged by op name: time per step and share of the step."""
        merged: dict[str, dict[str, Any]] = {}
        for op in self.breakdown:
            row = merged.setdefault(op.name, {"op": op.name, "kind": op.kind, "time_s": 0.0,
                                              "flops": 0.0, "launches": 0})
            row["time_s"] += op.total_s
            row["flops"] += op.flops * op.count
            row["launches"] += op.count
        rows = sorted(merged.values(), key=lambda r: -r["time_s"])
        for r in rows:
            r["share"] = r["time_s"] / self.step_time_s
            r["tflops"] = r["flops"] / r["time_s"] / 1e12 if r["time_s"] > 0 and r["flops"] else 0
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape.to_dict(),
            "gpu": self.gpu, "dtype": self.dtype, "micro_batch": self.micro_batch,
            "seq_len": self.seq_len, "tp": self.tp, "recompute": self.recompute,
            "plan": self.plan.to_dict(), "n_gpus": self.n_gpus,
            "step_time_s": self.step_time_s, "tokens_per_s": self.tokens_per_s,
            "model_tflops": self.model_tflops, "mfu": self.mfu,
            "memory_bytes": self.memory_bytes, "memory": dict(self.memory),
            "stage_memory": list(self.stage_memory), "fits": self.fits,
            "categories": dict(self.categories), "exposed_comm": dict(self.exposed_comm),
            "bubble_fraction": self.bubble_fraction,
            "exposed_comm_fraction": self.exposed_comm_fraction,
            "sustained_clock": self.sustained_clock,
            "flops_per_step": self.flops_per_step, "calibration": self.calibration,
            "notes": list(self.notes),
            "breakdown": [{**asdict(op), "total_s": op.total_s} for op in self.breakdown],
        }


def memory_note(memory: dict[str, Any], gpu: GPU) -> str | None:
    """A note when the step's memory per GPU exceeds the GPU's (None when it fits)."""
    total = memory["total"] / GIB
    if total <= gpu.memory_gb:
        return None
    states = sum(memory.get(k, 0) for k in ("weights", "gradients", "master_weights",
                                            "optimizer_states")) / GIB
    return (f"memory: {total:.0f} GiB per GPU exceeds the {gpu.memory_gb:g} GB of "
            f"{gpu.name}; {states:.0f} GiB of it are weights, gradients and optimizer states: "
            f"shard them over data-parallel ranks (ZeRO/FSDP), raise tp or pp, lower the "
            f"micro-batch or recompute activations")


# --------------------------------------------------------------------------- pricing


class _Pricer:
    """price() with a cache (plan_training prices the same ops under many plans), the
    sustained-clock factor on compute-bound kernels, and collectives over the system."""

    def __init__(self, setup: Setup, params: StepParams) -> None:
        self.setup = setup
        self.gpu = setup.gpu
        self.clock = params.sustained_clock
        self.cache: dict[Any, float] = {}

    def __call__(self, op: Any) -> float:
        hit = self.cache.get(op)
        if hit is None:
            hit = price(op, self.gpu)
            if isinstance(op, Gemm | Attention):
                hit /= self.clock  # math-bound kernels run at the sustained clock
            self.cache[op] = hit
        return hit

    def comm(self, kind: str, nbytes: float, dim: str, *, plan: Plan, size: int | None = None
             ) -> float:
        n = getattr(plan, dim) if size is None else size
        if n <= 1 and kind != "send_recv":
            return 0.0
        rpn = min(ranks_per_node(plan, dim, self.setup.gpus_per_node), n)
        if kind == "send_recv":  # one hop between neighbouring stages
            n, rpn = 2, min(rpn, 2)
        key = ("comm", kind, float(nbytes), n, rpn)
        hit = self.cache.get(key)
        if hit is None:
            hit = _collective_time(kind, nbytes, n, rpn, self.setup)
            self.cache[key] = hit
        return hit


def _collective_time(kind: str, nbytes: float, n: int, rpn: int, setup: Setup) -> float:
    """The system's collective model (:func:`shapewise.cost.comm.collective_time`)."""
    from shapewise.cost.comm import collective_time

    return float(collective_time(kind, nbytes, system=setup.system, group_size=n,
                                 ranks_per_node=rpn))


@dataclass(slots=True)
class _Part:
    """A run of ops of one phase: time (compute + serial comm) and what it is made of."""

    ops: list[OpCost] = field(default_factory=list)

    def add(self, name: str, kind: Kind, phase: Phase, shape: tuple[int, ...], count: int,
            time_s: float, flops: float) -> None:
        self.ops.append(OpCost(name, kind, phase, shape, count, time_s, flops))

    def time(self, phase: str | None = None, kind: str | None = None) -> float:
        return sum(o.total_s for o in self.ops if (phase is None or o.phase == phase)
                   and (kind is None or o.kind == kind))

    def launches(self) -> int:
        return sum(o.count for o in self.ops if o.kind in ("gemm", "attention", "memory"))


def _gemm(part: _Part, pr: _Pricer, name: str, g: Gemm, count: int, recompute: bool, *,
          weight_grad_only: bool = False) -> None:
    fl = g.flops
    part.add(name, "gemm", "forward", (g.m, g.n, g.k), count, pr(g), fl)
    da, db = g.backward()
    if not weight_grad_only:
        part.add(name, "gemm", "backward", (da.m, da.n, da.k), count, pr(da), fl)
    part.add(name, "gemm", "backward", (db.m, db.n, db.k), count, pr(db), fl)
    if recompute:
        part.add(name, "gemm", "recompute", (g.m, g.n, g.k), count, pr(g), 0.0)


def _mem(part: _Part, pr: _Pricer, name: str, op: str, numel: int, count: int, nbytes: int,
         recompute: bool) -> None:
    f = MemoryBound(op=op, numel=numel, bytes_per_element=nbytes)
    b = MemoryBound(op=op, numel=numel, bytes_per_element=nbytes, backward=True)
    part.add(name, "memory", "forward", (numel,), count, pr(f), 0.0)
    part.add(name, "memory", "backward", (numel,), count, pr(b), 0.0)
    if recompute:
        part.add(name, "memory", "recompute", (numel,), count, pr(f), 0.0)


def _block(part: _Part, pr: _Pricer, ops: list[tuple[str, Op]], recompute: bool, *,
           mean_tokens: float | None) -> None:
    """A layer block's forward ops (:mod:`shapewise.blocks`): each GEMM with its two backward
    GEMMs, each memory-bound op with its backward, each expert-parallel all-to-all forward and
    backward (through the plan's collectives); the forward replayed under recompute. An
    expert GEMM's FLOPs are the model's (``mean_tokens`` per expert), not the padded or
    imbalanced rows it runs."""
    plan = pr.setup.plan
    for name, op in ops:
        if isinstance(op, Gemm):
            if mean_tokens is not None and name.startswith("experts_"):
                fl = op.flops * mean_tokens / op.m
                part.add(name, "gemm", "forward", (op.m, op.n, op.k), 1, pr(op), fl)
                for bw in op.backward():
                    part.add(name, "gemm", "backward", (bw.m, bw.n, bw.k), 1, pr(bw), fl)
                if recompute:
                    part.add(name, "gemm", "recompute", (op.m, op.n, op.k), 1, pr(op), 0.0)
            else:
                _gemm(part, pr, name, op, 1, recompute)
        elif isinstance(op, MemoryBound):
            _mem(part, pr, name, op.op, op.numel, 1, op.bytes_per_element, recompute)
        elif isinstance(op, Collective):  # EP all-to-all: within the dp·cp ranks
            c = pr.comm(op.kind, op.nbytes, "dp", plan=plan, size=op.group_size)
            for phase in ("forward", "backward") + (("recompute",) if recompute else ()):
                part.add(name, "comm", phase, (int(op.nbytes),), 1, c, 0.0)


def _layer(shape: ModelShape, setup: Setup, pr: _Pricer, *, moe: bool = False) -> _Part:
    """One transformer layer (an MoE layer when ``moe``), one micro-batch, one GPU."""
    from shapewise.blocks import attention_projections, mlp_ops, quantize_ops
    from shapewise.model.flops import attention_forward_flops_per_sequence
    from shapewise.recipe import FP8_ATTENTION_SPEEDUP

    plan, dt, rec = setup.plan, setup.dtype, setup.recipe
    gdt = rec.gemm_dtype if rec is not None else dt
    nb = DTYPE_BYTES[dt]
    t, cp, sp = plan.tp, plan.cp, plan.sequence_parallel
    full = plan.recompute == "full"
    b, s = plan.micro_batch, setup.seq_len
    h, a, g_kv, d = shape.hidden_size, shape.num_attention_heads, shape.kv_heads, shape.head_dim
    T = b * s // cp
    Tn = T // t if sp else T  # tokens of the norms, residuals and dropout on this rank
    p = _Part()
    before, after = attention_projections(shape, tokens=T, tp=t, gemm_dtype=gdt)
    mlp = mlp_ops(shape, moe=moe, tokens=T, tp=t, ep=plan.ep, dtype=dt, gemm_dtype=gdt,
                  capacity_factor=setup.capacity_factor, imbalance=setup.imbalance)
    mean = None
    if moe:
        mean = T * shape.num_experts_per_tok * plan.ep / shape.num_experts  # type: ignore[operator]
    _block(p, pr, before, full, mean_tokens=None)
    causal = shape.causal
    window = shape.sliding_window if causal else None
    be = setup.attention_backend
    af = Attention(batch=b, heads=a // t, seq_len=s, head_dim=d, kv_heads=g_kv // t,
                   causal=causal, window=window, dtype=dt, backend=be)
    ab = Attention(batch=b, heads=a // t, seq_len=s, head_dim=d, kv_heads=g_kv // t,
                   causal=causal, window=window, backward=True, dtype=dt, backend=be)
    # MLA: QKᵀ is d_qk wide, AV d_v: priced at d_qk, scaled by the mean of the two widths
    scale_f = scale_b = (d + shape.v_dim) / (2 * d) / cp
    if rec is not None and rec.fp8_attention:  # cuDNN fp8 over bf16, fitted (recipe.py)
        scale_f /= FP8_ATTENTION_SPEEDUP["forward"]
        scale_b /= FP8_ATTENTION_SPEEDUP["backward"]
    flops = b * attention_forward_flops_per_sequence(shape, s) / t / cp
    shp = (b, a // t, s // cp, d)
    p.add("attention", "attention", "forward", shp, 1, pr(af) * scale_f, flops)
    p.add("attention", "attention", "backward", shp, 1, pr(ab) * scale_b, 2 * flops)
    if plan.recompute in ("full", "selective"):
        p.add("attention", "attention", "recompute", shp, 1, pr(af) * scale_f, 0.0)
    _block(p, pr, after + mlp, full, mean_tokens=mean)
    for name, phase, q in quantize_ops(rec, before + after + mlp):
        p.add(name, "memory", phase, (q.numel,), 1, pr(q), 0.0)
        if full and phase == "forward":
            p.add(name, "memory", "recompute", (q.numel,), 1, pr(q), 0.0)
    norm = "rmsnorm" if shape.norm == "rmsnorm" else "layernorm"
    _mem(p, pr, norm, norm, Tn * h, 2, nb, full)
    _mem(p, pr, "residual_add", "residual_add", Tn * h, 2, nb, full)
    if shape.position_embedding == "rotary":
        rot = T * (a + g_kv) * d // t
        if shape.mla:  # the rope part of each query head and the one shared key
            rot = T * (a // t + 1) * shape.qk_rope_head_dim  # type: ignore[operator]
        _mem(p, pr, "rotary", "rotary", rot, 1, nb, full)
    if t > 1:  # Megatron: two collectives forward, their conjugates backward
        nbytes = T * h * nb
        if sp:  # all-gather before each column-parallel GEMM, reduce-scatter after row
            ag = pr.comm("all_gather", nbytes, "tp", plan=plan)
            rs = pr.comm("reduce_scatter", nbytes, "tp", plan=plan)
            for phase in ("forward", "backward") + (("recompute",) if full else ()):
                p.add("tp_all_gather", "comm", phase, (nbytes,), 2, ag, 0.0)
                p.add("tp_reduce_scatter", "comm", phase, (nbytes,), 2, rs, 0.0)
        else:
            ar = pr.comm("all_reduce", nbytes, "tp", plan=plan)
            for phase in ("forward", "backward") + (("recompute",) if full else ()):
                p.add("tp_allreduce", "comm", phase, (nbytes,), 2, ar, 0.0)
    return p


def _first_stage(shape: ModelShape, setup: Setup, pr: _Pricer) -> _Part:
    """What only the first stage runs: the embedding (or a ViT's patch embedding)."""
    plan, dt = setup.plan, setup.dtype
    nb = DTYPE_BYTES[dt]
    b, h = plan.micro_batch, shape.hidden_size
    T = b * setup.seq_len // plan.cp
    p = _Part()
    if shape.arch == "vit":
        patch_k = shape.num_channels * shape.patch_size**2
        # pixels need no gradient: the patch embedding has only its weight-gradient GEMM
        _gemm(p, pr, "patch_embed", Gemm(m=b * shape.num_patches, n=h, k=patch_k, dtype=dt),
              1, False, weight_grad_only=True)
    else:
        p.add("embedding", "memory", "forward", (T * h,), 1,
              pr(MemoryBound(op="residual_add", numel=T * h, bytes_per_element=nb)), 0.0)
        p.add("embedding", "memory", "backward", (T * h,), 1,
              pr(MemoryBound(op="residual_add", numel=T * h, bytes_per_element=nb,
                             backward=True)), 0.0)
    return p


def _last_stage(shape: ModelShape, setup: Setup, pr: _Pricer) -> _Part:
    """What only the last stage runs: final norm, output layer and loss."""
    plan, dt = setup.plan, setup.dtype
    nb = DTYPE_BYTES[dt]
    b, h, t = plan.micro_batch, shape.hidden_size, plan.tp
    T = b * setup.seq_len // plan.cp
    norm = "rmsnorm" if shape.norm == "rmsnorm" else "layernorm"
    p = _Part()
    _mem(p, pr, "final_norm", norm, T * h, 1, nb, False)
    if shape.arch == "vit":
        if shape.pooler:  # ViTModel: tanh(dense) on the class token
            _gemm(p, pr, "pooler", Gemm(m=b, n=h, k=h, dtype=dt), 1, False)
        if shape.num_labels:
            _gemm(p, pr, "classifier", Gemm(m=b, n=shape.num_labels, k=h, dtype=dt), 1, False)
        return p
    v = shape.vocab_size
    rec = setup.recipe  # the logits stay in bf16 unless the recipe says fp8_logits
    ldt = rec.gemm_dtype if rec is not None and rec.fp8_logits else dt
    logits = Gemm(m=T, n=v // t, k=h, dtype=ldt)  # type: ignore[operator]
    _gemm(p, pr, "logits", logits, 1, False)
    if ldt != dt:
        from shapewise.blocks import quantize_ops

        for name, phase, q in quantize_ops(rec, [("logits", logits)]):
            p.add(name, "memory", phase, (q.numel,), 1, pr(q), 0.0)
    if setup.fused_loss:  # one kernel over the bf16 logits, gradient written in place
        _mem(p, pr, "cross_entropy", "cross_entropy", T * v // t, 1, nb, False)
    else:  # PyTorch: cast the logits to fp32, log-softmax, NLL; and back in the backward
        # (the cast is priced as a copy pass and listed with the loss it feeds)
        _mem(p, pr, "cross_entropy", "residual_add", T * v // t, 1, nb, False)
        _mem(p, pr, "cross_entropy", "cross_entropy", T * v // t, 1, 4, False)
    if t > 1:
        nbytes = T * h * nb
        ar = pr.comm("all_reduce", nbytes, "tp", plan=plan)
        p.add("tp_allreduce", "comm", "forward", (nbytes,), 1, ar, 0.0)
        p.add("tp_allreduce", "comm", "backward", (nbytes,), 1, ar, 0.0)
    return p


def _exposed(comm: float, window: float, units: int, eta: float) -> float:
    """Time a collective of ``comm`` seconds adds when it runs under ``window`` seconds of
    compute split into ``units`` buckets: the last bucket never hides."""
    if comm <= 0:
        return 0.0
    return max(comm / max(units, 1), comm - eta * window)


def price_step(shape: ModelShape, setup: Setup, *, params: StepParams | None = None,
               _pricer: _Pricer | None = None) -> Estimate:
    """The step of ``shape`` under a validated ``setup`` (no checks here: see make_setup)."""
    from shapewise.model.flops import step_flops
    from shapewise.model.memory import plan_memory

    prm = params or step_params(setup.gpu)
    pr = _pricer or _Pricer(setup, prm)
    plan, g = setup.plan, setup.gpu
    nb = DTYPE_BYTES[setup.dtype]
    m, P, v = plan.grad_accum, plan.pp, plan.virtual_stages
    L = shape.num_hidden_layers
    layer = _layer(shape, setup, pr)
    first, last = _first_stage(shape, setup, pr), _last_stage(shape, setup, pr)
    per_stage = [L // P + (1 if i < L % P else 0) for i in range(P)]
    # a mixture of experts: its leading dense layers, then MoE layers (each kind priced once)
    dense = L - shape.moe_layers
    moe_layer = _layer(shape, setup, pr, moe=True) if shape.is_moe else None

    def stage_parts(i: int) -> list[tuple[_Part, int]]:
        if moe_layer is None:
            parts = [(layer, per_stage[i])]
        else:
            start = sum(per_stage[:i])
            n_dense = max(0, min(start + per_stage[i], dense) - start)
            parts = [(layer, n_dense), (moe_layer, per_stage[i] - n_dense)]
        if i == 0:
            parts.append((first, 1))
        if i == P - 1:
            parts.append((last, 1))
        return parts

    def stage_time(i: int, phases: tuple[str, ...]) -> float:
        return sum(n * sum(pt.time(ph) for ph in phases) for pt, n in stage_parts(i))

    fwd = [stage_time(i, ("forward",)) for i in range(P)]
    bwd = [stage_time(i, ("backward", "recompute")) for i in range(P)]
    tot = [f_ + b_ for f_, b_ in zip(fwd, bwd, strict=True)]
    crit = max(range(P), key=lambda i: tot[i])
    X, Y = tot[crit], sum(tot) / P
    tp_kinds: dict[str, float] = {}
    for pt, n in stage_parts(crit):
        for o in pt.ops:
            if o.kind == "comm":
                tp_kinds[o.name] = tp_kinds.get(o.name, 0.0) + n * o.total_s * m
    tp_total = sum(tp_kinds.values())

    exposed: dict[str, float] = dict(tp_kinds)
    eta = prm.overlap_efficiency
    # ---- parameters held by the critical stage, per GPU (after tp)
    from shapewise.model.memory import stage_params
    sp_params = stage_params(shape, plan, crit)
    dpg = plan.shard_group
    stage = plan.shard_stage
    grad_b = DTYPE_BYTES[setup.grad_reduce_dtype]
    gather_b = DTYPE_BYTES[setup.param_gather_dtype]
    units = max(per_stage[crit], 1)
    F, B = fwd[crit], bwd[crit]

    def add(key: str, value: float) -> None:
        if value > 0:
            exposed[key] = exposed.get(key, 0.0) + value

    if dpg > 1:
        if plan.fsdp == "hybrid":
            shard = max(1, min(dpg, setup.gpus_per_node // (plan.tp * plan.cp)))
            while dpg % shard:
                shard -= 1
            rep = dpg // shard
        else:
            shard, rep = dpg, 1
        if stage == 3:
            ag = pr.comm("all_gather", sp_params * gather_b, "dp", plan=plan, size=shard)
            rs = pr.comm("reduce_scatter", sp_params * grad_b, "dp", plan=plan, size=shard)
            add("dp_all_gather", m * (_exposed(ag, F, units, eta)))
            # backward: the weights are gathered again, then their gradients reduce-scattered
            bwd_comm = ag + rs
            if bwd_comm > 0:
                e = m * _exposed(bwd_comm, B, units, eta)
                add("dp_all_gather", e * ag / bwd_comm)
                add("dp_reduce_scatter", e * rs / bwd_comm)
            if rep > 1:  # hybrid: the shard's gradients all-reduced across nodes, once
                ar = pr.comm("all_reduce", sp_params * grad_b / shard, "dp", plan=plan,
                             size=rep)
                add("dp_all_reduce", _exposed(ar, B, units, eta))
        elif stage == 0:
            ar = pr.comm("all_reduce", sp_params * grad_b, "dp", plan=plan, size=dpg)
            add("dp_all_reduce", _exposed(ar, B, units, eta))
        else:
            rs = pr.comm("reduce_scatter", sp_params * grad_b, "dp", plan=plan, size=dpg)
            ag = pr.comm("all_gather", sp_params * gather_b, "dp", plan=plan, size=dpg)
            times = m if stage == 2 else 1  # ZeRO-2 reduce-scatters every micro-batch
            add("dp_reduce_scatter", times * _exposed(rs, B, units, eta))
            add("dp_all_gather", _exposed(ag, F, units, eta))
    if plan.cp > 1:  # ring exchange of K and V under the attention kernels
        T = plan.micro_batch * setup.seq_len // plan.cp
        kv = 2 * T * shape.kv_heads * shape.head_dim // plan.tp * nb * plan.cp
        att_f = sum(o.total_s for o in layer.ops if o.kind == "attention"
                    and o.phase == "forward")
        att_b = sum(o.total_s for o in layer.ops if o.kind == "attention"
                    and o.phase != "forward")
        agc = pr.comm("all_gather", kv, "cp", plan=plan)
        rsc = pr.comm("reduce_scatter", kv, "cp", plan=plan)
        per_layer = _exposed(agc, att_f, 1, eta) + _exposed(agc + rsc, att_b, 1, eta)
        add("cp_all_gather", m * per_stage[crit] * per_layer)
    if P > 1:  # activations forward, their gradients backward, per chunk boundary
        T = plan.micro_batch * setup.seq_len // plan.cp
        act = T * shape.hidden_size * nb // (plan.tp if plan.sequence_parallel else 1)
        add("pp_send_recv", 2 * m * v * pr.comm("send_recv", act, "pp", plan=plan))

    # ---- optimizer: Adam over this GPU's shard of fp32 master weights and states
    opt_params = sp_params / (dpg if stage >= 1 else 1)
    opt_bytes = OPTIMIZER_STEP_BYTES * opt_params
    t_opt = opt_bytes / (g.bandwidth * calibration_of(g).bandwidth_efficiency)

    # ---- host overheads: per kernel launched, per step
    launches = sum(n * pt.launches() for pt, n in stage_parts(crit))
    t_over = m * launches * prm.kernel_overhead_s + prm.step_overhead_s

    bubble = (P - 1) / v * X if P > 1 else 0.0
    imbalance = m * (X - Y)
    comm_other = sum(val for k, val in exposed.items() if k not in tp_kinds)
    compute = m * Y - tp_total
    step = compute + tp_total + imbalance + bubble + comm_other + t_opt + t_over
    categories = {"compute": compute, "comm": tp_total + comm_other, "bubble": bubble,
                  "imbalance": imbalance, "optimizer": t_opt, "overhead": t_over}

    breakdown: list[OpCost] = []
    for pt, n in stage_parts(crit):
        for o in pt.ops:
            breakdown.append(OpCost(o.name, o.kind, o.phase, o.shape, o.count * n * m,
                                    o.time_s, o.flops))

    fl = step_flops(shape, micro_batch=plan.micro_batch, seq_len=setup.seq_len)["total"]
    replica_flops = float(fl) * m
    tokens = plan.micro_batch * setup.seq_len * plan.dp * m
    n = plan.n_gpus
    tflops = replica_flops * plan.dp / n / step / 1e12
    mem_stages = [plan_memory(shape, setup, i) for i in range(P)]
    peak_i = max(range(P), key=lambda i: mem_stages[i]["total"])
    peak = mem_stages[peak_i]
    capacity = g.memory_gb * GIB
    fits = peak["total"] <= capacity
    notes: list[str] = list(setup.notes)
    rec = setup.recipe
    gemm_dtype = rec.gemm_dtype if rec is not None else setup.dtype
    if rec is not None:
        notes.append(f"recipe {rec.name}: MFU is against the {gemm_dtype} peak "
                     f"({g.peak_flops(gemm_dtype) / 1e12:.0f} TFLOP/s), as llm-foundry "
                     f"reports fp8 runs")
    cal = calibration_of(g)
    if cal.status != "fitted":
        notes.append(f"{g.name}: spec-derived cost-model defaults (no measurement fitted)")
    if not fits:
        notes.append(memory_note(peak, g) or "")
    return Estimate(
        shape=shape, gpu=g.id, dtype=setup.dtype, micro_batch=plan.micro_batch,
        seq_len=setup.seq_len, tp=plan.tp, recompute=plan.recompute != "none",
        step_time_s=step, tokens_per_s=tokens / step / n, model_tflops=tflops,
        mfu=tflops * 1e12 / g.peak_flops(gemm_dtype), memory_bytes=int(peak["total"]),
        memory={k: int(val) for k, val in peak.items()}, breakdown=tuple(breakdown),
        flops_per_step=replica_flops, calibration=cal.status, notes=tuple(notes), plan=plan,
        categories=categories, exposed_comm=exposed,
        stage_memory=tuple(int(s["total"]) for s in mem_stages), fits=fits,
        sustained_clock=prm.sustained_clock,
    )


def estimate(
    shape: ModelShape, *, gpu: Any = None, micro_batch: int | None = None,
    seq_len: int | None = None, tp: int | None = None, dtype: str = "bf16",
    recompute: bool | str | None = None, profile: str | None = None, plan: Plan | None = None,
    grad_reduce_dtype: str | None = None, param_gather_dtype: str | None = None,
    fused_loss: bool = False,
    attention_backend: str | None = None, recipe: Any = None, ep: int | None = None,
    capacity_factor: float | None = None, imbalance: float = 1.0,
) -> Estimate:
    """Predict one optimizer step of ``shape`` on ``gpu`` under ``plan`` (figures per GPU).

    ``plan`` defaults to one GPU (``Plan()``); the keywords ``micro_batch``, ``tp`` and
    ``recompute`` (True/False or a mode) of earlier versions still work and fill the plan,
    and may not contradict an explicit one. ``seq_len`` defaults to the shape's
    ``max_position_embeddings`` (decoders) and is fixed by image and patch size for ViT.
    ``gpu`` is a GPU or system name or object; ``profile`` (a path) overrides it.

    ``recipe``: an fp8 recipe (``shapewise.recipe``: 'te-delayed', 'te-current', 'mxfp8',
    'blockwise', 'mi300x', or a ``Recipe``); ``dtype`` stays the storage type. Mixtures of
    experts: ``ep`` (or ``plan.ep``) expert-parallel ranks, ``capacity_factor`` (None:
    dropless) and ``imbalance`` (the busiest expert-parallel rank's tokens over the mean);
    ``ep`` without a plan means ``Plan(dp=ep, ep=ep)``: each expert-parallel rank is a
    data-parallel replica of the rest of the model.

    >>> from shapewise import ModelShape
    >>> e = estimate(ModelShape.llama(hidden_size=4096, num_attention_heads=32,
    ...              num_hidden_layers=32, intermediate_size=11008, vocab_size=32000),
    ...              gpu="h100", seq_len=4096)
    >>> 0.3 < e.mfu < 0.8
    True
    """
    plan = _legacy_plan(plan, micro_batch=micro_batch, tp=tp, recompute=recompute, ep=ep)
    setup = make_setup(shape, gpu=gpu, seq_len=seq_len, plan=plan, dtype=dtype,
                       grad_reduce_dtype=grad_reduce_dtype,
                       param_gather_dtype=param_gather_dtype, profile=profile,
                       fused_loss=fused_loss, attention_backend=attention_backend,
                       recipe=recipe, capacity_factor=capacity_factor, imbalance=imbalance)
    return price_step(shape, setup)


def _legacy_plan(plan: Plan | None, *, micro_batch: Any, tp: Any, recompute: Any,
                 ep: Any = None) -> Plan:
    """The plan from estimate()'s keywords; an explicit plan must agree with them."""
    legacy = {"micro_batch": micro_batch, "tp": tp, "recompute": recompute, "ep": ep}
    given = {k: val for k, val in legacy.items() if val is not None}
    if "recompute" in given:
        rc = given["recompute"]
        if isinstance(rc, bool):
            given["recompute"] = "full" if rc else "none"
        elif not isinstance(rc, str):
            raise InputError(f"recompute: must be True, False, 'none', 'selective' or "
                             f"'full', got {rc!r}")
    if plan is None:
        ep_ = given.get("ep", 1)
        if isinstance(ep_, int) and not isinstance(ep_, bool) and ep_ > 1:
            given["dp"] = ep_  # ep ranks are data-parallel ranks: ep alone means dp = ep GPUs
        return Plan(**given)
    if not isinstance(plan, Plan):
        raise InputError(f"plan: expected a shapewise.Plan, got {type(plan).__name__}")
    for k, val in given.items():
        if getattr(plan, k) != val:
            raise InputError(f"{k}: {val!r} contradicts plan.{k} = {getattr(plan, k)!r} "
                             f"(give it in the plan only)")
    return plan
