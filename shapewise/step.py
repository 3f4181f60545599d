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
from typing import Any

from shapewise.cost.defaults import calibration_of
from shapewise.hardware.catalog import DTYPE_BYTES, GPU
from shapewise.model.shape import ModelShape
from shapewise.plan import Plan, Setup, Target, make_setup, ranks_per_node, shard_size
from shapewise.step_ops import (
    OpCost,
    Part,
    Pricer,
    first_stage_ops,
    last_stage_ops,
    layer_kinds,
    layer_ops,
)
from shapewise.step_params import OPTIMIZER_STEP_BYTES, StepParams, step_params

GIB = 2**30


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
    from shapewise.model.memory import memory_fit

    fit = memory_fit(memory["total"], gpu)
    if fit.fits:
        return None
    total = memory["total"] / GIB
    states = sum(memory.get(k, 0) for k in ("weights", "gradients", "master_weights",
                                            "optimizer_states")) / GIB
    return (f"memory: {total:.0f} GiB per GPU exceeds the {gpu.memory_gb:g} GB of "
            f"{gpu.name}; {states:.0f} GiB of it are weights, gradients and optimizer states: "
            f"shard them over data-parallel ranks (ZeRO/FSDP), raise tp or pp, lower the "
            f"micro-batch or recompute activations")


def _exposed(comm: float, window: float, units: int, eta: float) -> float:
    """Time a collective of ``comm`` seconds adds when it runs under ``window`` seconds of
    compute split into ``units`` buckets: the last bucket never hides."""
    if comm <= 0:
        return 0.0
    return max(comm / max(units, 1), comm - eta * window)


def price_step(shape: ModelShape, setup: Setup, *, params: StepParams | None = None,
               _pricer: Pricer | None = None) -> Estimate:
    """The step of ``shape`` under a validated ``setup`` (no checks here: see make_setup)."""
    from shapewise.model.flops import step_flops
    from shapewise.model.memory import memory_fit, plan_memory

    prm = params or step_params(setup.gpu)
    pr = _pricer or Pricer(setup, prm)
    plan, g = setup.plan, setup.gpu
    nb = DTYPE_BYTES[setup.dtype]
    m, P, v = plan.grad_accum, plan.pp, plan.virtual_stages
    L = shape.num_hidden_layers
    # the parts depend on the shape and on these plan fields only (plan_training reuses them)
    key = (shape, setup.seq_len, setup.dtype, setup.fused_loss, setup.attention_backend,
           plan.tp, plan.cp, plan.sequence_parallel, plan.micro_batch, plan.recompute,
           setup.recipe, plan.ep, setup.capacity_factor, setup.imbalance)
    parts = pr.parts.get(key)
    if parts is None:  # the layers by kind (dense or MoE, windowed or full), built as met
        parts = (first_stage_ops(shape, setup, pr), last_stage_ops(shape, setup, pr), {})
        pr.parts[key] = parts
    first, last, layers = parts
    per_stage = [L // P + (1 if i < L % P else 0) for i in range(P)]

    def layer_parts(i: int) -> list[tuple[Part, int]]:
        """Stage ``i``'s layers: one Part per kind (layer_kinds), with how many it holds."""
        start = sum(per_stage[:i])
        out = []
        for moe, windowed, n in layer_kinds(shape, start, start + per_stage[i]):
            if (moe, windowed) not in layers:
                layers[moe, windowed] = layer_ops(shape, setup, pr, moe=moe,
                                                  windowed=windowed)
            out.append((layers[moe, windowed], n))
        return out

    def stage_parts(i: int) -> list[tuple[Part, int]]:
        parts = layer_parts(i)
        if i == 0:
            parts.append((first, 1))
        if i == P - 1:
            parts.append((last, 1))
        return parts

    stages = [stage_parts(i) for i in range(P)]  # built once: every use below reads them

    def stage_time(i: int, phases: tuple[str, ...]) -> float:
        return sum(n * sum(pt.time(ph) for ph in phases) for pt, n in stages[i])

    fwd = [stage_time(i, ("forward",)) for i in range(P)]
    bwd = [stage_time(i, ("backward", "recompute")) for i in range(P)]
    tot = [f_ + b_ for f_, b_ in zip(fwd, bwd, strict=True)]
    crit = max(range(P), key=lambda i: tot[i])
    X, Y = tot[crit], sum(tot) / P
    tp_kinds: dict[str, float] = {}
    for pt, n in stages[crit]:
        for o in pt.ops:
            if o.kind == "comm":
                tp_kinds[o.name] = tp_kinds.get(o.name, 0.0) + n * o.total_s * m
    tp_total = sum(tp_kinds.values())

    exposed: dict[str, float] = dict(tp_kinds)
    eta = prm.overlap_efficiency
    # ---- parameters held by the critical stage, per GPU (after tp)
    from shapewise.model.memory import stage_params, stage_routed_params
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

    # Mixture of experts under expert parallelism: each GPU holds E/ep of the routed experts,
    # shared only with the dp·cp/ep ranks that hold the same ones (Megatron's expert-data-
    # parallel group, every ep-th rank of dp·cp): their gradients and weights travel over
    # that group, the rest over dp·cp. Without ep (ep = 1) the groups coincide: one
    # collective, as for a dense model.
    ep = plan.ep
    exp_params = stage_routed_params(shape, plan, crit) if ep > 1 else 0
    dense_params = sp_params - exp_params
    exp_rpn = max(1, ranks_per_node(plan, "dp", setup.gpus_per_node) // ep)

    def dp_comm(kind: str, per_param: float, size: int, exp_size: int) -> float:
        """``kind`` over the dense parameters (``size`` ranks) and the routed experts'
        (``exp_size`` ranks of the expert-data-parallel group), ``per_param`` bytes each."""
        t = pr.comm(kind, dense_params * per_param, "dp", plan=plan, size=size)
        if exp_params:
            t += pr.comm(kind, exp_params * per_param, "dp", plan=plan, size=exp_size,
                         per_node=exp_rpn)
        return t

    if dpg > 1:
        shard = shard_size(plan, setup.gpus_per_node)
        rep = dpg // shard
        e_dpg = dpg // ep
        if stage == 3:
            # the experts shard over their share of the shard group (all of it under full
            # shard); when ep does not divide a hybrid shard, they are not sharded there
            e_shard = shard // ep if shard % ep == 0 else 1
            ag = dp_comm("all_gather", gather_b, shard, e_shard)
            rs = dp_comm("reduce_scatter", grad_b, shard, e_shard)
            add("dp_all_gather", m * (_exposed(ag, F, units, eta)))
            # backward: the weights are gathered again, then their gradients reduce-scattered
            bwd_comm = ag + rs
            if bwd_comm > 0:
                e = m * _exposed(bwd_comm, B, units, eta)
                add("dp_all_gather", e * ag / bwd_comm)
                add("dp_reduce_scatter", e * rs / bwd_comm)
            e_rep = e_dpg // e_shard
            if rep > 1 or e_rep > 1:  # hybrid: the shard's gradients all-reduced across
                # nodes, once
                ar = pr.comm("all_reduce", dense_params * grad_b / shard, "dp", plan=plan,
                             size=rep)
                if exp_params:
                    ar += pr.comm("all_reduce", exp_params * grad_b / e_shard, "dp",
                                  plan=plan, size=e_rep, per_node=exp_rpn)
                add("dp_all_reduce", _exposed(ar, B, units, eta))
        elif stage == 0:
            ar = dp_comm("all_reduce", grad_b, dpg, e_dpg)
            add("dp_all_reduce", _exposed(ar, B, units, eta))
        else:
            rs = dp_comm("reduce_scatter", grad_b, dpg, e_dpg)
            ag = dp_comm("all_gather", gather_b, dpg, e_dpg)
            times = m if stage == 2 else 1  # ZeRO-2 reduce-scatters every micro-batch
            add("dp_reduce_scatter", times * _exposed(rs, B, units, eta))
            add("dp_all_gather", _exposed(ag, F, units, eta))
    if plan.cp > 1:  # ring exchange of K and V under the attention kernels
        T = plan.micro_batch * setup.seq_len // plan.cp
        kv = 2 * T * shape.kv_heads * shape.head_dim // plan.tp * nb * plan.cp
        agc = pr.comm("all_gather", kv, "cp", plan=plan)
        rsc = pr.comm("reduce_scatter", kv, "cp", plan=plan)
        for layer, n_layers in layer_parts(crit):  # each kind hides under its own attention
            att_f = sum(o.total_s for o in layer.ops if o.kind == "attention"
                        and o.phase == "forward")
            att_b = sum(o.total_s for o in layer.ops if o.kind == "attention"
                        and o.phase != "forward")
            per_layer = _exposed(agc, att_f, 1, eta) + _exposed(agc + rsc, att_b, 1, eta)
            add("cp_all_gather", m * n_layers * per_layer)
    if P > 1:  # activations forward, their gradients backward, per chunk boundary
        T = plan.micro_batch * setup.seq_len // plan.cp
        act = T * shape.hidden_size * nb // (plan.tp if plan.sequence_parallel else 1)
        add("pp_send_recv", 2 * m * v * pr.comm("send_recv", act, "pp", plan=plan))

    # ---- optimizer: Adam over this GPU's shard of fp32 master weights and states
    opt_params = sp_params / (shard_size(plan, setup.gpus_per_node) if stage >= 1 else 1)
    opt_bytes = OPTIMIZER_STEP_BYTES * opt_params
    t_opt = opt_bytes / (g.bandwidth * calibration_of(g).bandwidth_efficiency)

    # ---- host overheads: per kernel launched, per step
    launches = sum(n * pt.launches() for pt, n in stages[crit])
    t_over = m * launches * prm.kernel_overhead_s + prm.step_overhead_s

    bubble = (P - 1) / v * X if P > 1 else 0.0
    imbalance = m * (X - Y)
    comm_other = sum(val for k, val in exposed.items() if k not in tp_kinds)
    compute = m * Y - tp_total
    step = compute + tp_total + imbalance + bubble + comm_other + t_opt + t_over
    categories = {"compute": compute, "comm": tp_total + comm_other, "bubble": bubble,
                  "imbalance": imbalance, "optimizer": t_opt, "overhead": t_over}

    breakdown: list[OpCost] = []
    for pt, n in stages[crit]:
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
    fits = memory_fit(peak["total"], g).fits  # the one test check's rules use too
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
    capacity_factor: float | None = None, imbalance: float = 1.0, target: Target | None = None,
) -> Estimate:
    """Predict one optimizer step of ``shape`` on ``gpu`` under ``plan`` (figures per GPU).

    ``target`` (:func:`shapewise.make_target`) instead of the keywords from ``gpu`` on
    (``plan`` may still replace its plan): one target prices many models.

    ``plan`` defaults to one GPU (``Plan()``); the keywords ``micro_batch``, ``tp`` and
    ``recompute`` (True/False or a mode) of earlier versions still work and fill the plan,
    and may not contradict an explicit one. ``seq_len`` defaults to
    :func:`shapewise.model.run_defaults.default_seq_len` (the context capped at 4096) and is fixed
    by image and patch size for ViT.
    ``gpu`` is a GPU or system name or object; ``profile`` (a path) overrides it.
    ``attention_backend`` (fa2, fa3, fa4, cudnn, sdpa-flash, sdpa-efficient, sdpa-math,
    triton, ck, aotriton; see :mod:`shapewise.cost.attention`) prices that kernel; None,
    what PyTorch's SDPA dispatch picks. One that cannot run the shape is an InputError.
    ``recipe``: an fp8 recipe (:mod:`shapewise.recipe`); ``dtype`` stays the storage type.
    Mixtures of experts: ``ep`` (alone: ``Plan(dp=ep, ep=ep)``), ``capacity_factor`` (None:
    dropless), ``imbalance`` (the busiest expert-parallel rank's tokens over the mean).

    >>> from shapewise import ModelShape
    >>> e = estimate(ModelShape.llama(hidden_size=4096, num_attention_heads=32,
    ...              num_hidden_layers=32, intermediate_size=11008, vocab_size=32000),
    ...              gpu="h100", seq_len=4096)
    >>> 0.3 < e.mfu < 0.8
    True
    """
    setup = make_setup(shape, target=target, gpu=gpu, seq_len=seq_len, plan=plan,
                       micro_batch=micro_batch,
                       tp=tp, recompute=recompute, ep=ep, dtype=dtype,
                       grad_reduce_dtype=grad_reduce_dtype,
                       param_gather_dtype=param_gather_dtype, profile=profile,
                       fused_loss=fused_loss, attention_backend=attention_backend,
                       recipe=recipe, capacity_factor=capacity_factor, imbalance=imbalance)
    return price_step(shape, setup)
