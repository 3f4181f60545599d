"""The kernels of one micro-batch on one GPU under a plan, as typed ops priced by
``price()``: one transformer layer, the first stage's embedding and the last stage's head
and loss (the table in :mod:`shapewise.step`). :class:`Pricer` caches prices across the
plans of ``plan_training`` and applies the sustained clock to math-bound kernels."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from shapewise.cost.price import price
from shapewise.hardware.catalog import DTYPE_BYTES
from shapewise.model.shape import ModelShape
from shapewise.ops import Attention, Collective, Gemm, MemoryBound, Op
from shapewise.plan import Plan, Setup, ranks_per_node
from shapewise.step_params import StepParams

Kind = Literal["gemm", "attention", "memory", "comm"]
Phase = Literal["forward", "backward", "recompute"]


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



# --------------------------------------------------------------------------- pricing


class Pricer:
    """price() with a cache (plan_training prices the same ops under many plans), the
    sustained-clock factor on compute-bound kernels, and collectives over the system."""

    def __init__(self, setup: Setup, params: StepParams) -> None:
        self.setup = setup
        self.gpu = setup.gpu
        self.clock = params.sustained_clock
        self.cache: dict[Any, float] = {}
        self.parts: dict[Any, tuple[Part, Part, dict[tuple[bool, bool], Part]]] = {}

    def __call__(self, op: Any) -> float:
        hit = self.cache.get(op)
        if hit is None:
            hit = price(op, self.gpu)
            if isinstance(op, Gemm | Attention):
                hit /= self.clock  # math-bound kernels run at the sustained clock
            self.cache[op] = hit
        return hit

    def comm(self, kind: str, nbytes: float, dim: str, *, plan: Plan, size: int | None = None,
             per_node: int | None = None) -> float:
        """One collective over ``size`` ranks of ``dim`` (default: all of them); ``per_node``
        overrides how many of them share a node (a strided subgroup, such as the ranks of
        the dp·cp group that hold the same experts)."""
        n = getattr(plan, dim) if size is None else size
        if n <= 1 and kind != "send_recv":
            return 0.0
        rpn = min(ranks_per_node(plan, dim, self.setup.gpus_per_node)
                  if per_node is None else per_node, n)
        if kind == "send_recv":  # one hop between neighbouring stages
            n, rpn = 2, min(rpn, 2)
        key = ("comm", kind, float(nbytes), n, rpn)
        hit = self.cache.get(key)
        if hit is None:
            hit = _collective_time(kind, nbytes, n, rpn, dim, self.setup)
            self.cache[key] = hit
        return hit


def _collective_time(kind: str, nbytes: float, n: int, rpn: int, group: str,
                     setup: Setup) -> float:
    """One collective as a typed op, priced by ``price()`` on the plan's system."""
    return price(Collective(kind=kind, nbytes=nbytes, group=group,  # type: ignore[arg-type]
                            group_size=n, ranks_per_node=rpn), setup.system)


@dataclass(slots=True)
class Part:
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


def _gemm(part: Part, pr: Pricer, name: str, g: Gemm, count: int, recompute: bool, *,
          weight_grad_only: bool = False) -> None:
    fl = g.flops
    part.add(name, "gemm", "forward", (g.m, g.n, g.k), count, pr(g), fl)
    da, db = g.backward()
    if not weight_grad_only:
        part.add(name, "gemm", "backward", (da.m, da.n, da.k), count, pr(da), fl)
    part.add(name, "gemm", "backward", (db.m, db.n, db.k), count, pr(db), fl)
    if recompute:
        part.add(name, "gemm", "recompute", (g.m, g.n, g.k), count, pr(g), 0.0)


def _mem(part: Part, pr: Pricer, name: str, op: str, numel: int, count: int, nbytes: int,
         recompute: bool) -> None:
    f = MemoryBound(op=op, numel=numel, bytes_per_element=nbytes)
    b = MemoryBound(op=op, numel=numel, bytes_per_element=nbytes, backward=True)
    part.add(name, "memory", "forward", (numel,), count, pr(f), 0.0)
    part.add(name, "memory", "backward", (numel,), count, pr(b), 0.0)
    if recompute:
        part.add(name, "memory", "recompute", (numel,), count, pr(f), 0.0)


def _block(part: Part, pr: Pricer, ops: list[tuple[str, Op]], recompute: bool, *,
           mean_tokens: float | None) -> None:
    """A layer block's forward ops (:mod:`shapewise.blocks`): each GEMM with its two backward
    GEMMs, each memory-bound op with its backward, each expert-parallel all-to-all forward and
    backward (through the plan's collectives, within the dp·cp ranks); the forward replayed
    under recompute. An expert GEMM's FLOPs are the model's (``mean_tokens`` per expert),
    not the padded or imbalanced rows it runs."""
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
        elif isinstance(op, Collective):
            c = pr.comm(op.kind, op.nbytes, "dp", plan=plan, size=op.group_size)
            for phase in ("forward", "backward") + (("recompute",) if recompute else ()):
                part.add(name, "comm", phase, (int(op.nbytes),), 1, c, 0.0)


@lru_cache(maxsize=4096)  # plan_training asks for the same stages of many plans
def layer_kinds(shape: ModelShape, start: int, end: int) -> tuple[tuple[bool, bool, int], ...]:
    """(moe, windowed, count) of the layers ``start``..``end`` − 1 (a pipeline stage's), one
    entry per kind present, in the order the kinds first appear: an MoE layer is one past
    the leading ``num_dense_layers``, a windowed one has ``ModelShape.layer_window``."""
    counts: dict[tuple[bool, bool], int] = {}
    for i in range(start, end):
        kind = (shape.is_moe and i >= shape.num_dense_layers,
                shape.causal and shape.layer_window(i) is not None)
        counts[kind] = counts.get(kind, 0) + 1
    return tuple((moe, windowed, n) for (moe, windowed), n in counts.items())


def layer_ops(shape: ModelShape, setup: Setup, pr: Pricer, *, moe: bool = False,
              windowed: bool | None = None) -> Part:
    """One transformer layer (an MoE layer when ``moe``), one micro-batch, one GPU (count 1).

    The attention projections (plain or latent) and the MLP (dense or mixture of experts)
    come from :mod:`shapewise.blocks`; an fp8 recipe (``setup.recipe``) runs their GEMMs in
    fp8 and adds its quantization kernels. ``windowed``: the attention is a causal window of
    ``shape.sliding_window`` keys (True) or full (False); None: as every layer of the shape
    is when they are alike (full when they mix: pass it per kind, :func:`layer_kinds`)."""
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
    p = Part()
    before, after = attention_projections(shape, tokens=T, tp=t, gemm_dtype=gdt)
    mlp = mlp_ops(shape, moe=moe, tokens=T, tp=t, ep=plan.ep, dtype=dt, gemm_dtype=gdt,
                  capacity_factor=setup.capacity_factor, imbalance=setup.imbalance)
    mean = None
    if moe:
        mean = T * shape.num_experts_per_tok * plan.ep / shape.num_experts  # type: ignore[operator]
    _block(p, pr, before, full, mean_tokens=None)
    causal = shape.causal
    if windowed is None:
        windowed = shape.window_layers == shape.num_hidden_layers
    window = shape.sliding_window if causal and windowed else None
    be = setup.attention_backend
    dv = shape.v_head_dim  # MLA: V and the output are d_v wide, Q and K d_qk
    af = Attention(batch=b, heads=a // t, seq_len=s, head_dim=d, kv_heads=g_kv // t,
                   head_dim_v=dv, causal=causal, window=window, dtype=dt, backend=be)
    ab = Attention(batch=b, heads=a // t, seq_len=s, head_dim=d, kv_heads=g_kv // t,
                   head_dim_v=dv, causal=causal, window=window, backward=True, dtype=dt,
                   backend=be)
    sf = sb = 1 / cp
    if rec is not None and rec.fp8_attention:  # cuDNN fp8 over bf16, fitted (recipe.py)
        sf /= FP8_ATTENTION_SPEEDUP["forward"]
        sb /= FP8_ATTENTION_SPEEDUP["backward"]
    flops = b * attention_forward_flops_per_sequence(shape, s,
                                                     windowed=window is not None) / t / cp
    shp = (b, a // t, s // cp, d)
    p.add("attention", "attention", "forward", shp, 1, pr(af) * sf, flops)
    p.add("attention", "attention", "backward", shp, 1, pr(ab) * sb, 2 * flops)
    if plan.recompute in ("full", "selective"):
        p.add("attention", "attention", "recompute", shp, 1, pr(af) * sf, 0.0)
    _block(p, pr, after + mlp, full, mean_tokens=mean)
    for name, phase, q in quantize_ops(rec, before + after + mlp):
        p.add(name, "memory", phase, (q.numel,), 1, pr(q), 0.0)
        if full and phase == "forward":
            p.add(name, "memory", "recompute", (q.numel,), 1, pr(q), 0.0)
    norm = "rmsnorm" if shape.norm == "rmsnorm" else "layernorm"
    norms = 4 if shape.sandwich_norm else 1 if shape.shared_norm else 2
    _mem(p, pr, norm, norm, Tn * h, norms, nb, full)
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


def first_stage_ops(shape: ModelShape, setup: Setup, pr: Pricer) -> Part:
    """What only the first stage runs: the embedding (or a ViT's patch embedding)."""
    plan, dt = setup.plan, setup.dtype
    nb = DTYPE_BYTES[dt]
    b, h = plan.micro_batch, shape.hidden_size
    T = b * setup.seq_len // plan.cp
    p = Part()
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


def last_stage_ops(shape: ModelShape, setup: Setup, pr: Pricer) -> Part:
    """What only the last stage runs: final norm, output layer and loss."""
    plan, dt = setup.plan, setup.dtype
    nb = DTYPE_BYTES[dt]
    b, h, t = plan.micro_batch, shape.hidden_size, plan.tp
    T = b * setup.seq_len // plan.cp
    norm = "rmsnorm" if shape.norm == "rmsnorm" else "layernorm"
    p = Part()
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
