"""One training step, decomposed into its real kernels, each priced by the cost model.

Per tensor-parallel rank (Megatron-LM layout: column-parallel QKV and MLP-up, row-parallel
output projection and MLP-down, vocab-parallel logits), with T = micro_batch · seq_len
tokens, h hidden, a heads, g KV heads, d head dim, f FFN size, v vocabulary, t TP size:

========================  ============================  ======================================
op                        forward GEMM (m, n, k)        notes
========================  ============================  ======================================
QKV projection            (T, (a + 2g)·d / t, h)        GQA shrinks K and V to g·d columns
attention                 fused kernel, a/t heads       causal for decoders, not for ViT
output projection         (T, h, a·d / t)               + all-reduce of T·h when t > 1
MLP up (GELU)             (T, f / t, h)
MLP gate+up (SwiGLU)      (T, 2f / t, h)                the two column-parallel matrices fused
MLP down                  (T, h, f / t)                 + all-reduce of T·h when t > 1
logits (once)             (T, v / t, h)                 + cross-entropy over T·v/t
========================  ============================  ======================================

Every forward GEMM C[m,n] = A[m,k]·B[k,n] has two backward GEMMs of the same FLOPs:
dA = dC·Bᵀ with shape (m, k, n) and dB = Aᵀ·dC with shape (k, n, m). Attention backward
is priced by its own kernel model. Memory-bound ops (norms, activations, residual adds,
rotary) are bytes over bandwidth. Activation recompute replays each layer's forward during
the backward pass (its time is counted; its FLOPs are not model FLOPs, so MFU ignores them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shapewise.blocks import attention_projections, mlp_ops, quantize_ops
from shapewise.cost.attention import attention_flops, attention_time
from shapewise.cost.comm import allreduce_time
from shapewise.cost.defaults import calibration_of
from shapewise.cost.elementwise import op_time
from shapewise.cost.gemm import check_dim, gemm_time
from shapewise.cost.moe import check_routing
from shapewise.cost.price import price
from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, GPU, canonical_dtype, get_gpu, load_profile
from shapewise.model.flops import attention_forward_flops_per_sequence
from shapewise.model.moe import check_ep, moe_mlp_activation_bytes
from shapewise.model.params import check_tp, param_tensors
from shapewise.model.shape import ModelShape, check_limit
from shapewise.ops import Collective, Gemm, MemoryBound, Op
from shapewise.recipe import FP8_ATTENTION_SPEEDUP, Recipe, check_recipe, fp8_weight_bytes

Kind = Literal["gemm", "attention", "memory", "comm"]


@dataclass(frozen=True, slots=True)
class OpCost:
    """One kernel of the step: its shape, how often it runs per step, and its time."""

    name: str
    kind: Kind
    phase: Literal["forward", "backward", "recompute"]
    shape: tuple[int, ...]
    """GEMM (m, n, k); attention (batch, heads, seq, head_dim); bytes for memory/comm"""
    count: int
    """launches per step (per TP rank)"""
    time_s: float
    """seconds per launch"""
    flops: float
    """model FLOPs per launch (0 for memory-bound ops and communication)"""

    @property
    def total_s(self) -> float:
        return self.time_s * self.count


@dataclass(frozen=True, slots=True)
class Estimate:
    """Predicted training step of one model shape on one GPU type (per GPU)."""

    shape: ModelShape
    gpu: str
    dtype: str
    micro_batch: int
    seq_len: int
    tp: int
    recompute: bool
    step_time_s: float
    """one micro-batch's forward + backward on one TP group, seconds"""
    tokens_per_s: float
    """training tokens per second per GPU (micro_batch·seq_len / step / tp)"""
    model_tflops: float
    """model FLOPs (no recompute) per second per GPU, TFLOP/s"""
    mfu: float
    """model_tflops over the GPU's dense peak for dtype, or for the recipe's GEMM type (fp8)"""
    memory_bytes: int
    """weights, gradients, optimizer states and activations per GPU"""
    memory: dict[str, int]
    breakdown: tuple[OpCost, ...]
    flops_per_step: float
    calibration: str
    notes: tuple[str, ...] = field(default=())

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
            "step_time_s": self.step_time_s, "tokens_per_s": self.tokens_per_s,
            "model_tflops": self.model_tflops, "mfu": self.mfu,
            "memory_bytes": self.memory_bytes, "memory": dict(self.memory),
            "flops_per_step": self.flops_per_step, "calibration": self.calibration,
            "notes": list(self.notes),
            "breakdown": [{**asdict(op), "total_s": op.total_s} for op in self.breakdown],
        }


def _gemm_ops(name: str, m: int, n: int, k: int, count: int, gpu: GPU, dtype: str,
              recompute: bool, *, weight_grad_only: bool = False) -> list[OpCost]:
    """Forward GEMM (m, n, k), its two backward GEMMs, and its recompute replay."""
    flops = 2.0 * m * n * k
    ops = [OpCost(name, "gemm", "forward", (m, n, k), count,
                  gemm_time(m, n, k, gpu=gpu, dtype=dtype), flops)]
    if not weight_grad_only:
        ops.append(OpCost(name, "gemm", "backward", (m, k, n), count,
                          gemm_time(m, k, n, gpu=gpu, dtype=dtype), flops))
    ops.append(OpCost(name, "gemm", "backward", (k, n, m), count,
                      gemm_time(k, n, m, gpu=gpu, dtype=dtype), flops))
    if recompute:
        ops.append(OpCost(name, "gemm", "recompute", (m, n, k), count, ops[0].time_s, 0.0))
    return ops


def _mem_ops(name: str, op: str, numel: int, count: int, gpu: GPU, nbytes: int,
             recompute: bool) -> list[OpCost]:
    fwd = op_time(op, numel, gpu=gpu, bytes_per_element=nbytes)
    bwd = op_time(op, numel, gpu=gpu, bytes_per_element=nbytes, backward=True)
    ops = [OpCost(name, "memory", "forward", (numel,), count, fwd, 0.0),
           OpCost(name, "memory", "backward", (numel,), count, bwd, 0.0)]
    if recompute:
        ops.append(OpCost(name, "memory", "recompute", (numel,), count, fwd, 0.0))
    return ops


GIB = 2**30


def _block_costs(ops: list[tuple[str, Op]], count: int, gpu: GPU, recompute: bool, *,
                 shape: ModelShape, tokens: int, ep: int) -> list[OpCost]:
    """OpCosts of a layer block's forward ops (shapewise.blocks): each GEMM with its two
    backward GEMMs, each memory-bound op with its backward, each all-to-all twice; the
    forward replayed under recompute. An expert GEMM's FLOPs are the model's (the mean
    tokens per expert), not the padded or imbalanced rows it runs."""
    out: list[OpCost] = []
    mean = None
    if shape.is_moe:
        mean = tokens * shape.num_experts_per_tok * ep / shape.num_experts  # type: ignore[operator]
    for name, op in ops:
        if isinstance(op, Gemm):
            scale = mean / op.m if (mean is not None and name.startswith("experts_")) else 1.0
            fl = op.flops * scale
            out.append(OpCost(name, "gemm", "forward", (op.m, op.n, op.k), count,
                              price(op, gpu), fl))
            for bw in op.backward():
                out.append(OpCost(name, "gemm", "backward", (bw.m, bw.n, bw.k), count,
                                  price(bw, gpu), fl))
            if recompute:
                out.append(OpCost(name, "gemm", "recompute", (op.m, op.n, op.k), count,
                                  price(op, gpu), 0.0))
        elif isinstance(op, MemoryBound):
            fwd = price(op, gpu)
            bwd = price(MemoryBound(op=op.op, numel=op.numel,
                                    bytes_per_element=op.bytes_per_element, backward=True), gpu)
            out.append(OpCost(name, "memory", "forward", (op.numel,), count, fwd, 0.0))
            out.append(OpCost(name, "memory", "backward", (op.numel,), count, bwd, 0.0))
            if recompute:
                out.append(OpCost(name, "memory", "recompute", (op.numel,), count, fwd, 0.0))
        elif isinstance(op, Collective):
            c = price(op, gpu)
            phases = ("forward", "backward") + (("recompute",) if recompute else ())
            for phase in phases:
                out.append(OpCost(name, "comm", phase, (int(op.nbytes),), count, c, 0.0))
    return out


def memory_note(memory: dict[str, Any], gpu: GPU) -> str | None:
    """A note when the step's memory per GPU exceeds the GPU's (None when it fits).

    The catalog's memory sizes are the datasheets' "80 GB", compared here as GiB (HBM
    stacks come in binary sizes): a warning, not a verdict."""
    total = memory["total"] / GIB
    if total <= gpu.memory_gb:
        return None
    states = sum(memory.get(k, 0) for k in ("weights", "gradients", "master_weights",
                                            "optimizer_states")) / GIB
    return (f"memory: {total:.0f} GiB per GPU exceeds the {gpu.memory_gb:g} GB of "
            f"{gpu.name}; {states:.0f} GiB of it are weights, gradients and optimizer states "
            f"held whole on every GPU (no ZeRO/FSDP modelled): shard them over data-parallel "
            f"ranks, raise tp, lower the micro-batch or recompute activations")


def estimate(
    shape: ModelShape, *, gpu: str | GPU | None = None, micro_batch: int = 1,
    seq_len: int | None = None, tp: int = 1, dtype: str = "bf16", recompute: bool = False,
    profile: str | None = None, recipe: str | Recipe | None = None, ep: int = 1,
    capacity_factor: float | None = None, imbalance: float = 1.0,
) -> Estimate:
    """Predict one training step of ``shape`` on ``gpu`` (per tensor-parallel rank).

    ``seq_len`` defaults to the shape's ``max_position_embeddings`` (decoders) and is fixed
    by image and patch size for ViT. ``profile`` (a path) overrides ``gpu``.

    ``recipe``: an fp8 recipe (``shapewise.recipe``: 'te-delayed', 'mxfp8', ...); ``dtype``
    stays the storage type (bf16). Mixtures of experts: ``ep`` expert-parallel ranks (E/ep
    experts each, all-to-all dispatch and combine), ``capacity_factor`` (None: dropless) and
    ``imbalance`` (the busiest expert-parallel rank's tokens over the mean, >= 1).

    >>> from shapewise import ModelShape
    >>> e = estimate(ModelShape.llama(hidden_size=4096, num_attention_heads=32,
    ...              num_hidden_layers=32, intermediate_size=11008, vocab_size=32000),
    ...              gpu="h100", seq_len=4096)
    >>> 0.3 < e.mfu < 0.8
    True
    """
    from shapewise.model.flops import step_flops
    from shapewise.model.memory import memory_per_gpu

    if not isinstance(shape, ModelShape):
        raise InputError(f"shape: expected a ModelShape, got {type(shape).__name__}")
    if profile is not None:
        g = load_profile(profile)
    elif gpu is None:
        raise InputError("gpu: required (a name such as 'h100', or profile=PATH)")
    else:
        g = get_gpu(gpu)
    dt = canonical_dtype(dtype)
    if dt == "fp8":
        raise InputError("dtype: fp8 is a recipe, not a storage type: keep dtype='bf16' and "
                         "pass recipe= ('te-delayed', 'te-current', 'mxfp8', 'blockwise', "
                         "'mi300x')")
    g.peak_flops(dt)
    rec = check_recipe(recipe, g) if recipe is not None else None
    gdt = rec.gemm_dtype if rec is not None else dt
    check_ep(shape, ep)
    check_routing(capacity_factor=capacity_factor, imbalance=imbalance)
    b = check_limit("micro_batch", check_dim(micro_batch, "micro_batch"))
    t = check_limit("tp", check_dim(tp, "tp"))
    if not isinstance(recompute, bool):
        raise InputError(f"recompute: must be True or False, got {recompute!r}")
    if shape.arch == "vit":
        if seq_len is not None and seq_len != shape.seq_len:
            raise InputError(f"seq_len: a ViT's tokens are fixed by image and patch size "
                             f"({shape.seq_len}), got {seq_len}")
        s = shape.seq_len
    else:
        s = check_limit("seq_len", check_dim(
            seq_len if seq_len is not None else shape.max_position_embeddings, "seq_len"))
    check_tp(shape, t)

    nb = DTYPE_BYTES[dt]
    h, a, g_kv, d = shape.hidden_size, shape.num_attention_heads, shape.kv_heads, shape.head_dim
    L = shape.num_hidden_layers
    T = b * s
    ops: list[OpCost] = []

    # --- one transformer layer, priced once and counted L times (an MoE model: its
    # leading dense layers and its MoE layers each priced once)
    before, after = attention_projections(shape, tokens=T, tp=t, gemm_dtype=gdt)
    layer_ops: list[tuple[str, Op]] = [*before, *after]
    causal = shape.causal
    window = shape.sliding_window if causal else None
    dv_scale = 1.0
    if shape.mla:  # AV is d_v wide, QKᵀ d_qk: priced at d_qk, scaled by the mean width
        dv_scale = (d + shape.v_dim) / (2 * d)
    att_f = dv_scale * attention_time(batch=b, heads=a // t, seq_len=s, head_dim=d, gpu=g,
                                      dtype=dt, causal=causal, kv_heads=g_kv // t,
                                      window=window)
    att_b = dv_scale * attention_time(batch=b, heads=a // t, seq_len=s, head_dim=d, gpu=g,
                                      dtype=dt, causal=causal, kv_heads=g_kv // t,
                                      backward=True, window=window)
    if rec is not None and rec.fp8_attention:  # cuDNN fp8 over bf16, fitted (recipe.py)
        att_f /= FP8_ATTENTION_SPEEDUP["forward"]
        att_b /= FP8_ATTENTION_SPEEDUP["backward"]
    if shape.mla:
        af = b * attention_forward_flops_per_sequence(shape, s) / t
    else:
        af = attention_flops(batch=b, heads=a // t, seq_len=s, head_dim=d, causal=causal,
                             window=window)
    ops.append(OpCost("attention", "attention", "forward", (b, a // t, s, d), L, att_f, af))
    ops.append(OpCost("attention", "attention", "backward", (b, a // t, s, d), L, att_b, 2 * af))
    if recompute:
        ops.append(OpCost("attention", "attention", "recompute", (b, a // t, s, d), L, att_f, 0))
    kinds = [(L - shape.moe_layers, False), (shape.moe_layers, True)]
    for count, moe in kinds:
        if not count:
            continue
        mlp = mlp_ops(shape, moe=moe, tokens=T, tp=t, ep=ep, dtype=dt, gemm_dtype=gdt,
                      capacity_factor=capacity_factor, imbalance=imbalance)
        ops += _block_costs(layer_ops + mlp, count, g, recompute, shape=shape, tokens=T, ep=ep)
        for name, phase, q in quantize_ops(rec, layer_ops + mlp):
            ops.append(OpCost(name, "memory", phase, (q.numel,), count, price(q, g), 0.0))
            if recompute and phase == "forward":
                ops.append(OpCost(name, "memory", "recompute", (q.numel,), count,
                                  price(q, g), 0.0))
    norm = "rmsnorm" if shape.norm == "rmsnorm" else "layernorm"
    ops += _mem_ops(norm, norm, T * h, 2 * L, g, nb, recompute)
    ops += _mem_ops("residual_add", "residual_add", T * h, 2 * L, g, nb, recompute)
    if shape.position_embedding == "rotary":
        rot = T * (a + g_kv) * d // t
        if shape.mla:  # rotary on the rope part of each query head and the one shared key
            rot = T * (a // t + 1) * shape.qk_rope_head_dim  # type: ignore[operator]
        ops += _mem_ops("rotary", "rotary", rot, L, g, nb, recompute)
    if t > 1:  # Megatron: all-reduce after out_proj and mlp_down (fwd), and at their
        # conjugates in the backward; recompute replays the forward ones
        ar = allreduce_time(T * h * nb, gpu=g, tp=t)
        n_ar = 2 * L
        ops.append(OpCost("tp_allreduce", "comm", "forward", (T * h * nb,), n_ar, ar, 0.0))
        ops.append(OpCost("tp_allreduce", "comm", "backward", (T * h * nb,), n_ar, ar, 0.0))
        if recompute:
            ops.append(OpCost("tp_allreduce", "comm", "recompute", (T * h * nb,), n_ar, ar, 0.0))

    # --- embeddings and head, once per step
    if shape.arch == "vit":
        patch_k = shape.num_channels * shape.patch_size**2
        # pixels need no gradient: the patch embedding has only its weight-gradient GEMM
        ops += _gemm_ops("patch_embed", b * shape.num_patches, h, patch_k, 1, g, dt, False,
                         weight_grad_only=True)
        ops += _mem_ops("final_norm", norm, T * h, 1, g, nb, False)
        if shape.pooler:  # ViTModel: tanh(dense) on the class token
            ops += _gemm_ops("pooler", b, h, h, 1, g, dt, False)
        if shape.num_labels:
            ops += _gemm_ops("classifier", b, shape.num_labels, h, 1, g, dt, False)
    else:
        ops.append(OpCost("embedding", "memory", "forward", (T * h,), 1,
                          op_time("residual_add", T * h, gpu=g, bytes_per_element=nb), 0.0))
        ops.append(OpCost("embedding", "memory", "backward", (T * h,), 1,
                          op_time("residual_add", T * h, gpu=g, bytes_per_element=nb,
                                  backward=True), 0.0))
        ops += _mem_ops("final_norm", norm, T * h, 1, g, nb, False)
        v = shape.vocab_size
        # the logits stay in bf16 unless the recipe says fp8_logits
        ldt = gdt if rec is not None and rec.fp8_logits else dt
        ops += _gemm_ops("logits", T, v // t, h, 1, g, ldt, False)
        if ldt != dt:
            for name, phase, q in quantize_ops(rec, [("logits", Gemm(m=T, n=v // t, k=h,
                                                                     dtype=ldt))]):
                ops.append(OpCost(name, "memory", phase, (q.numel,), 1, price(q, g), 0.0))
        # cross-entropy reads the logits (fp32 softmax) and writes their gradient
        ops += _mem_ops("cross_entropy", "cross_entropy", T * v // t, 1, g, 4, False)
        if t > 1:
            ar = allreduce_time(T * h * nb, gpu=g, tp=t)
            ops.append(OpCost("tp_allreduce", "comm", "forward", (T * h * nb,), 1, ar, 0.0))
            ops.append(OpCost("tp_allreduce", "comm", "backward", (T * h * nb,), 1, ar, 0.0))

    step = sum(op.total_s for op in ops)
    flops = step_flops(shape, micro_batch=b, seq_len=s, recompute=False)
    model_flops = float(flops["total"] if isinstance(flops, dict) else flops)
    per_gpu_tflops = model_flops / t / step / 1e12
    mem = memory_per_gpu(shape, micro_batch=b, seq_len=s, tp=t, dtype=dt, recompute=recompute)
    if ep > 1:  # each expert-parallel rank holds E/ep of the routed experts and their states
        per_param = 2 * DTYPE_BYTES[dt] + (0 if dt == "fp32" else 4) + 8  # w, g, master, Adam
        routed = sum(p.layers * p.numel for p in param_tensors(shape) if p.routed) // t
        saved = routed - routed // ep
        for key, nbytes in (("weights", DTYPE_BYTES[dt]), ("gradients", DTYPE_BYTES[dt]),
                            ("master_weights", 0 if dt == "fp32" else 4),
                            ("optimizer_states", 8)):
            if key in mem:
                mem[key] -= saved * nbytes
        mem["total"] -= saved * per_param
    if shape.is_moe and not recompute:  # MoE layers keep their experts' activations
        e_b = DTYPE_BYTES[dt]
        rep, split = moe_mlp_activation_bytes(shape, sb=T, e=e_b, ep=ep,
                                              capacity_factor=capacity_factor,
                                              imbalance=imbalance)
        dense_mlp = (3 if shape.activation == "swiglu" else 2) * e_b * T * shape.ffn_size
        delta = shape.moe_layers * (rep + split // t - dense_mlp // t)
        mem["activations"] += delta
        mem["total"] += delta
    if rec is not None:  # the cached fp8 weight copies (row- and column-wise)
        mem["fp8_weights"] = fp8_weight_bytes(shape, tp=t, ep=ep, recipe=rec)
        mem["total"] += mem["fp8_weights"]
    notes = []
    cal = calibration_of(g)
    if cal.status != "fitted":
        notes.append(f"{g.name}: spec-derived cost-model defaults (no measurement fitted)")
    if rec is not None:
        notes.append(f"recipe {rec.name}: MFU is against the {rec.gemm_dtype} peak "
                     f"({g.peak_flops(gdt) / 1e12:.0f} TFLOP/s), as llm-foundry reports fp8 "
                     f"runs")
    if shape.is_moe and recompute:
        notes.append("memory: with recompute, the MoE layer rebuilt in the backward is "
                     "counted as a dense MLP of intermediate_size")
    over = memory_note(mem, g)
    if over:
        notes.append(over)
    return Estimate(
        shape=shape, gpu=g.id, dtype=dt, micro_batch=b, seq_len=s, tp=t, recompute=recompute,
        step_time_s=step, tokens_per_s=T / step / t, model_tflops=per_gpu_tflops,
        mfu=per_gpu_tflops * 1e12 / g.peak_flops(gdt), memory_bytes=int(mem["total"]),
        memory={k: int(v) for k, v in mem.items()}, breakdown=tuple(ops),
        flops_per_step=model_flops, calibration=cal.status, notes=tuple(notes),
    )
