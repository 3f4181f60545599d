"""Training memory per GPU: weights, gradients, optimizer state, activations.

Activations follow V. Korthikanti, J. Casper, S. Lym, L. McAfee, M. Andersch, M. Shoeybi,
B. Catanzaro, "Reducing Activation Recomputation in Large Transformer Models" (MLSys 2023,
arXiv:2205.05198), Section 4. Their GPT layer stores, per layer, in bytes (2-byte
activations, 1-byte dropout masks; s tokens, b sequences, h hidden, a heads):

    attention   QKV input 2sbh, Q and K 4sbh, V 2sbh, softmax 2as²b, its dropout mask as²b
                and output 2as²b, output-projection input 2sbh, dropout mask sbh
                = 11sbh + 5as²b
    MLP         first GEMM input 2sbh, GELU input 8sbh and output 8sbh, dropout mask sbh
                = 19sbh
    norms       two LayerNorm inputs, 4sbh
    total       sbh·(34 + 5as/h)

We assume FlashAttention, which never stores the s×s softmax, its mask or its dropout output,
so the 5as/h term goes away: **34·s·b·h bytes per layer**. (FlashAttention keeps a
log-sum-exp per query and head, 4·a·s·b bytes, under 0.1% of that, not counted.) With tensor
parallelism of size t and sequence parallelism off, Megatron splits what lies between its
column- and row-parallel GEMMs (Q, K, V, the attention output and the MLP interior: 24sbh)
and replicates the rest (norm inputs, QKV and MLP-GEMM inputs, dropout masks: 10sbh):
sbh·(10 + 24/t), the paper's equation (2).

The terms above are written out for this shape rather than hard-coded, so they stay exact
for the paper's layer (MHA, GELU, f = 4h: 34) and follow other shapes: GQA stores K and V of
g·d columns, SwiGLU stores its gate and up outputs and their product (3 of s·b·f instead of
GELU's 2), Gemma's sandwich norms (``sandwich_norm``) keep the inputs of their two extra
norms (4sbh more), Cohere's one shared norm (``shared_norm``) keeps one input and one
output (4sbh less), and ``dropout=False`` (Llama-style training) drops the masks. A sliding
window changes nothing here: FlashAttention's backward reads the Q, K, V and output of the
whole sequence, windowed or not.

Full recompute keeps only each layer's input (2sbh, replicated without sequence
parallelism) plus, while a layer's backward runs, that one layer's recomputed activations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, canonical_dtype
from shapewise.model.params import check_tp, count_params
from shapewise.model.shape import ModelShape, check_bool, check_int, resolve_seq_len

Optimizer = Literal["adam", "adamw", "sgd"]

#: fp32 optimizer state per parameter: Adam's m and v; SGD's momentum buffer
OPTIMIZER_STATE_BYTES: dict[str, int] = {"adam": 8, "adamw": 8, "sgd": 4}
#: fp32 master copy of the weights kept by mixed-precision training (none when training in fp32)
MASTER_WEIGHT_BYTES = 4
#: training dtypes: weights, gradients and saved activations are stored in them. fp8 recipes
#: keep bf16 weights and most saved activations, so they are sized as 'bf16' here.
TRAINING_DTYPES = ("fp32", "tf32", "bf16", "fp16")


def _training_dtype(dtype: str) -> int:
    key = canonical_dtype(dtype)
    if key not in TRAINING_DTYPES:
        raise InputError(
            f"dtype: {key} is not a storage type for training "
            f"(one of {', '.join(TRAINING_DTYPES)}); fp8 recipes keep bf16 weights: pass 'bf16'"
        )
    return DTYPE_BYTES[key]


def _layer_parts(shape: ModelShape, *, sb: int, e: int, dropout: bool) -> tuple[int, int]:
    """(replicated, split) bytes of one layer for ``sb`` = s·b tokens: what every TP rank
    keeps whole without sequence parallelism, and what TP splits (module doc)."""
    h, f = shape.hidden_size, shape.ffn_size
    kv = shape.kv_heads * shape.head_dim
    norms = 1 if shape.shared_norm else 2  # Cohere: one norm whose output both GEMMs read
    replicated = (
        norms * e * sb * h  # inputs of the norms
        + norms * e * sb * h  # QKV and MLP first GEMM inputs (norm outputs)
        + (2 * sb * h if dropout else 0)  # 1-byte masks after attention and after the MLP
        + (2 * e * sb * h if shape.sandwich_norm else 0)  # inputs of the two output norms
    )
    mlp = (3 if shape.activation == "swiglu" else 2) * e * sb * f  # gate, up, product | in, out
    q = shape.q_size  # a·d (= h unless the head dim is decoupled)
    split = (
        e * sb * (q + 2 * kv)  # Q, K, V (what FlashAttention reads back)
        + e * sb * q  # attention output = output-projection input
        + mlp
    )
    return replicated, split


def activation_bytes_per_layer(shape: ModelShape, *, micro_batch: int, seq_len: int | None = None,
                               tp: int = 1, dtype: str = "bf16", dropout: bool = True) -> int:
    """Bytes one layer stores for its backward (no recompute), per GPU; see the module doc."""
    b = check_int("micro_batch", micro_batch)
    s = resolve_seq_len(shape, seq_len)
    check_tp(shape, tp)
    e = _training_dtype(dtype)
    check_bool("dropout", dropout)
    replicated, split = _layer_parts(shape, sb=s * b, e=e, dropout=dropout)
    return replicated + split // tp


def memory_per_gpu(shape: ModelShape, *, micro_batch: int, seq_len: int | None = None,
                   tp: int = 1, dtype: str = "bf16", recompute: bool = False,
                   optimizer: Optimizer = "adam", dropout: bool = True) -> dict[str, int]:
    """Bytes on one GPU of a tensor-parallel group of ``tp`` for one training micro-batch.

    Keys: ``weights`` and ``gradients`` (in ``dtype``), ``master_weights`` (fp32 copy, 4
    bytes/param, none when ``dtype`` is fp32), ``optimizer_states`` (Adam m and v: 8
    bytes/param), ``activations`` (the layers, Korthikanti et al. 2022 with FlashAttention,
    plus the embedding dropout mask), ``logits`` (output layer: final-norm and GEMM inputs
    and the fp32 logits of the cross-entropy, vocab-parallel), ``total`` (their sum).

    No data-parallel sharding (ZeRO/FSDP) or pipeline parallelism; no framework workspace,
    allocator fragmentation or CUDA context, so leave headroom.

    >>> from shapewise.model.presets import get_preset
    >>> m = memory_per_gpu(get_preset("llama-2-7b"), micro_batch=1, seq_len=4096)
    >>> m["weights"] == 2 * 6738415616, m["optimizer_states"] == 8 * 6738415616
    (True, True)
    """
    b = check_int("micro_batch", micro_batch)
    s = resolve_seq_len(shape, seq_len)
    e = _training_dtype(dtype)
    check_bool("recompute", recompute)
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZER_STATE_BYTES:
        raise InputError(
            f"optimizer: {optimizer!r} is not known; known: {', '.join(OPTIMIZER_STATE_BYTES)}"
        )
    n = count_params(shape, tp=tp)  # checks tp
    h, L = shape.hidden_size, shape.num_hidden_layers

    layer = activation_bytes_per_layer(shape, micro_batch=b, seq_len=s, tp=tp, dtype=dtype,
                                       dropout=dropout)
    # recompute: each layer's input (replicated), plus one layer rebuilt during its backward
    activations = L * e * s * b * h + layer if recompute else L * layer
    if dropout:
        activations += s * b * h  # 1-byte mask of the dropout after the embeddings

    if shape.arch == "vit":
        heads = (1 if shape.num_labels else 0) + (1 if shape.pooler else 0)
        logits = (e * s * b * h  # final norm input
                  + heads * e * b * h  # classifier / pooler input: the class token only
                  + 4 * b * shape.num_labels)  # type: ignore[operator]  # fp32 logits
    else:
        logits = (2 * e * s * b * h  # final norm input and logits GEMM input
                  + 4 * s * b * shape.vocab_size // tp)  # type: ignore[operator]  # fp32 logits

    out = {
        "weights": e * n,
        "gradients": e * n,
        "master_weights": 0 if e >= MASTER_WEIGHT_BYTES else MASTER_WEIGHT_BYTES * n,
        "optimizer_states": OPTIMIZER_STATE_BYTES[optimizer] * n,
        "activations": activations,
        "logits": logits,
    }
    out["total"] = sum(out.values())
    return out


# --------------------------------------------------------------------------- under a plan

#: CUDA context, cuBLAS/cuDNN workspaces and NCCL communicator buffers, outside PyTorch's
#: allocator: a CUDA 12 context takes about 0.5 GiB on A100/H100 (nvidia-smi of an idle
#: torch process) and each NCCL communicator a few hundred MiB of buffers; 1 GiB in all.
CONTEXT_BYTES = 1 * 2**30
#: PyTorch's caching allocator rounds blocks up and fragments under a changing working set:
#: 5% over the live tensors is allowed for it (allocator-stats reports of reserved over
#: allocated in steady training are typically a few percent).
ALLOCATOR_FRACTION = 0.05


GIB = 2**30


def gpu_capacity_bytes(gpu: Any) -> int:
    """The memory a plan may fill on ``gpu``: its catalog ``memory_gb`` counted as GiB (the
    convention of every fit in shapewise; the allocator allowance is on the need side, in
    :func:`plan_memory`, not taken off the capacity)."""
    return int(gpu.memory_gb * GIB)


@dataclass(frozen=True, slots=True)
class MemoryFit:
    """Whether a step's peak memory per GPU fits the GPU: the one test behind ``plan``'s
    ``fits``, ``estimate``'s ``DOES NOT FIT`` and the check rules (SW010, SW019)."""

    need_bytes: int
    """peak bytes per GPU, the allocator allowance (5% + 1 GiB) included"""
    capacity_bytes: int
    """the GPU's memory (:func:`gpu_capacity_bytes`)"""

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.capacity_bytes

    @property
    def over_bytes(self) -> int:
        """Bytes past the capacity (0 when it fits)."""
        return max(0, self.need_bytes - self.capacity_bytes)

    def describe(self) -> str:
        """'71.2 GiB of 80.0 GiB (allocator allowance of 5% + 1 GiB included)'."""
        over = f", {self.over_bytes / GIB:.1f} GiB over" if not self.fits else ""
        return (f"{self.need_bytes / GIB:.1f} GiB of {self.capacity_bytes / GIB:.1f} GiB"
                f"{over} (allocator allowance of {ALLOCATOR_FRACTION:.0%} + "
                f"{CONTEXT_BYTES / GIB:g} GiB included)")


def memory_fit(need_bytes: float, gpu: Any) -> MemoryFit:
    """:class:`MemoryFit` of a peak of ``need_bytes`` per GPU (a :func:`plan_memory`
    ``total``) on ``gpu``."""
    return MemoryFit(int(need_bytes), gpu_capacity_bytes(gpu))


def stage_params(shape: ModelShape, plan: Any, stage: int) -> int:
    """Parameters one GPU of pipeline ``stage`` holds (after tensor parallelism, before any
    data-parallel sharding): its layers, the embeddings on the first stage, the final norm
    and output layer on the last (a tied embedding has a copy there too when pp > 1)."""
    return _stage_params(shape, plan.tp, plan.pp, stage, getattr(plan, "ep", 1))


def stage_routed_params(shape: ModelShape, plan: Any, stage: int) -> int:
    """Of :func:`stage_params`, the routed experts' parameters (E/ep experts per GPU): their
    gradients are reduced over the dp·cp/ep ranks that hold the same experts, not all dp·cp."""
    return _stage_params(shape, plan.tp, plan.pp, stage, getattr(plan, "ep", 1), True)


@functools.lru_cache(maxsize=4096)
def _stage_params(shape: ModelShape, t: int, P: int, stage: int, ep: int = 1,
                  routed_only: bool = False) -> int:
    from shapewise.model.params import param_tensors

    total = 0
    for p in param_tensors(shape):
        if routed_only and not p.routed:
            continue
        numel = p.numel // t if p.sharded else p.numel
        if p.routed:  # each expert-parallel rank holds E/ep of the routed experts
            numel //= ep
        if p.name.startswith("layers."):
            total += numel * _stage_layers(shape, p, P, stage)
        elif p.category == "embeddings":
            if stage == 0:
                total += numel
            if (stage == P - 1 and P > 1 and shape.tie_word_embeddings
                    and p.name == "embed_tokens.weight"):
                total += numel  # Megatron keeps the tied table on the last stage too
        elif stage == P - 1:
            total += numel  # final norm, lm_head, ViT pooler/classifier
    return total


def _stage_layers(shape: ModelShape, p: Any, P: int, stage: int) -> int:
    """How many of ``stage``'s layers hold the per-layer tensor ``p``: every layer, or for a
    mixture of experts the leading dense layers (the dense MLP) or the MoE layers."""
    L = shape.num_hidden_layers
    start = sum(L // P + (1 if i < L % P else 0) for i in range(stage))
    end = start + L // P + (1 if stage < L % P else 0)
    if p.layers == L:
        return end - start
    lo, hi = (0, shape.num_dense_layers) if not p.routed and not _is_moe_tensor(p) else (
        shape.num_dense_layers, L)
    return max(0, min(end, hi) - max(start, lo))


def _is_moe_tensor(p: Any) -> bool:
    """A tensor of the MoE layers' MLP (router, experts, shared experts), not the dense MLP."""
    return p.name.startswith(("layers.*.mlp.gate.", "layers.*.mlp.experts.",
                              "layers.*.mlp.shared_expert"))


def in_flight(plan: Any, stage: int) -> float:
    """Micro-batches whose activations pipeline ``stage`` holds at its peak.

    1F1B: stage i of p runs p − i forwards before its first backward (capped by the m
    micro-batches of the step); interleaving over v chunks adds (p − 1)/(p·v) of a stage's
    worth (Narayanan et al. 2021, §2.2; Korthikanti et al. 2022, §4.2.3)."""
    p, m, v = plan.pp, plan.grad_accum, plan.virtual_stages
    if p == 1:
        return 1.0
    n = float(min(m, p - stage))
    if v > 1:
        n *= 1 + (p - 1) / (p * v)
    return n


def plan_memory(shape: ModelShape, setup: Any, stage: int = 0, *,
                optimizer: Optimizer = "adam", dropout: bool = False) -> dict[str, int]:
    """Peak bytes on one GPU of pipeline ``stage`` under ``setup.plan``.

    States (mixed-precision Adam, 16 bytes/param with bf16 gradients): weights in the
    training dtype, gradients in ``grad_reduce_dtype``, an fp32 master copy and Adam's m
    and v, each divided over the dp·cp shard group from its ZeRO stage on (1: optimizer
    states and master; 2: + gradients; 3/FSDP: + weights, which then also hold two gathered
    layers, the one running and the one prefetched, and one layer's unsharded gradients).
    Activations: Korthikanti et al. per layer (sequence parallelism divides all of it by t,
    full recompute keeps each layer's input plus one layer rebuilt), times the layers on the
    stage, times the micro-batches in flight (:func:`in_flight`). The last stage adds the
    logits in the training dtype and the fp32 log-probabilities the loss keeps for its
    backward. Then the allocator allowance (:data:`ALLOCATOR_FRACTION`,
    :data:`CONTEXT_BYTES`). ``dropout=False``: today's pre-training runs (Llama, MPT) use
    none.
    """
    from shapewise.hardware.catalog import DTYPE_BYTES
    from shapewise.plan import shard_size

    plan = setup.plan
    e = DTYPE_BYTES[setup.dtype]
    gb = DTYPE_BYTES[setup.grad_reduce_dtype]
    t, P, L = plan.tp, plan.pp, shape.num_hidden_layers
    zero = plan.shard_stage
    n = stage_params(shape, plan, stage)
    layers = L // P + (1 if stage < L % P else 0)
    layer_params = _layer_params(shape, t, getattr(plan, "ep", 1))
    shard = shard_size(plan, setup.gpus_per_node)
    out: dict[str, int] = {
        "weights": e * n // (shard if zero >= 3 else 1),
        "gradients": gb * n // (shard if zero >= 2 else 1),
        "master_weights": 0 if e >= MASTER_WEIGHT_BYTES else
        MASTER_WEIGHT_BYTES * n // (shard if zero >= 1 else 1),
        "optimizer_states": OPTIMIZER_STATE_BYTES[optimizer] * n // (shard if zero >= 1 else 1),
    }
    if zero >= 3 and shard > 1:
        pg = DTYPE_BYTES[setup.param_gather_dtype]
        out["gathered"] = 2 * pg * layer_params + gb * layer_params
    recipe = getattr(setup, "recipe", None)
    if recipe is not None:  # the cached fp8 copies (row- and column-wise) of the GEMM weights
        out["fp8_weights"] = 2 * _stage_matmul_params(shape, plan, stage) // (
            shard if zero >= 3 else 1)
    s, b = setup.seq_len // plan.cp, plan.micro_batch
    sb = s * b
    h = shape.hidden_size
    replicated, split = _layer_parts(shape, sb=sb, e=e, dropout=dropout)
    moe_layers = 0
    if shape.is_moe:  # the stage's MoE layers keep their experts' activations instead
        from shapewise.model.moe import moe_mlp_activation_bytes
        from shapewise.model.params import ParamTensor

        router = ParamTensor("layers.*.mlp.gate.weight", 1, 1, "mlp", False)
        moe_layers = _stage_layers(shape, router, P, stage)
        rep_moe, split_moe = moe_mlp_activation_bytes(
            shape, sb=sb, e=e, ep=getattr(plan, "ep", 1),
            capacity_factor=getattr(setup, "capacity_factor", None),
            imbalance=getattr(setup, "imbalance", 1.0))
        dense_mlp = (3 if shape.activation == "swiglu" else 2) * e * sb * shape.ffn_size
        moe_parts = (replicated + rep_moe, split - dense_mlp + split_moe)
    kinds = [((replicated, split), layers - moe_layers)]
    if moe_layers:
        kinds.append((moe_parts, moe_layers))
    acts = 0.0
    for (rep_b, split_b), count in kinds:
        if plan.sequence_parallel:
            layer_bytes = (rep_b + split_b) // t
            layer_input = e * sb * h // t
        else:
            layer_bytes = rep_b + split_b // t
            layer_input = e * sb * h
        if plan.recompute == "full":  # (the one rebuilt layer: the larger kind, below)
            acts += count * layer_input * in_flight(plan, stage)
        else:  # with FlashAttention, selective recompute has no s² softmax left to drop
            acts += count * layer_bytes * in_flight(plan, stage)
    if plan.recompute == "full":
        acts += max((rb + sbt) // t if plan.sequence_parallel else rb + sbt // t
                    for (rb, sbt), count in kinds if count)
    out["activations"] = int(acts)
    if stage == P - 1:
        if shape.arch == "vit":
            heads = (1 if shape.num_labels else 0) + (1 if shape.pooler else 0)
            out["logits"] = e * sb * h + heads * e * b * h + 4 * b * (shape.num_labels or 0)
        else:
            v = shape.vocab_size or 0
            out["logits"] = 2 * e * sb * h + e * sb * v // t  # norm/GEMM inputs, logits
            if not setup.fused_loss:  # fp32 log-probabilities kept for the backward
                out["loss"] = 4 * sb * v // t
    live = sum(out.values())
    out["allocator"] = int(ALLOCATOR_FRACTION * live) + CONTEXT_BYTES
    out["total"] = sum(out.values())
    return out


@functools.lru_cache(maxsize=1024)
def _layer_params(shape: ModelShape, tp: int, ep: int = 1) -> int:
    """Parameters of one transformer layer on one TP (and EP) rank; for a mixture of
    experts, of its largest layer (a dense or an MoE one)."""
    from shapewise.model.params import param_tensors

    dense = moe = 0
    for p in param_tensors(shape):
        if not p.name.startswith("layers."):
            continue
        numel = p.numel // tp if p.sharded else p.numel
        if p.routed:
            numel //= ep
        if p.layers == shape.num_hidden_layers:  # in every layer
            dense += numel
            moe += numel
        elif p.routed or _is_moe_tensor(p):
            moe += numel
        else:
            dense += numel
    return max(dense, moe) if shape.is_moe else dense


def _stage_matmul_params(shape: ModelShape, plan: Any, stage: int) -> int:
    """Elements of the GEMM weights in ``stage``'s layers on one GPU (the fp8 recipe's
    weight copies; the output layer stays in bf16)."""
    from shapewise.model.params import param_tensors

    total = 0
    for p in param_tensors(shape):
        if not (p.matmul and p.name.startswith("layers.")):
            continue
        numel = p.numel // plan.tp if p.sharded else p.numel
        if p.routed:
            numel //= getattr(plan, "ep", 1)
        total += numel * _stage_layers(shape, p, plan.pp, stage)
    return total
