"""A parallel training plan, and the validated setup every public entry point builds once.

:class:`Plan` says how one model is laid out over GPUs: data parallel (``dp``, optionally with
ZeRO 1–3 or FSDP), tensor parallel (``tp``, optionally with sequence parallelism), pipeline
parallel (``pp`` stages, 1F1B, interleaved over ``virtual_stages`` chunks per GPU), context
parallel (``cp``), the micro-batch, the global batch (sequences, from which gradient
accumulation follows) and activation recompute. It validates itself once, when built, in the
style of torchtitan's ``ParallelDims``: every field is checked on its own, then together.

:class:`Setup` is the frozen bundle below the API (gpu, system, dtype, micro-batch, seq_len,
plan): :func:`make_setup` checks the plan against the model (tp divides heads, KV heads, FFN
and vocabulary; pp at most the layers; cp divides the sequence) and nothing below it checks
again.

Rank layout (Megatron-LM's default order): tp innermost, then cp, dp, and pp outermost, so a
group of stride ``s`` (the product of the dims inside it) keeps ``gpus_per_node // s`` of its
ranks on one node.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

from shapewise.errors import InputError

Recompute = Literal["none", "selective", "full"]
RECOMPUTE_MODES: tuple[str, ...] = ("none", "selective", "full")
FSDP_MODES: tuple[str, ...] = ("full", "hybrid")
#: the dims of a plan, innermost first (the rank layout above)
DIMS: tuple[str, ...] = ("tp", "cp", "dp", "pp")


def _count(value: object, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise InputError(f"{name}: must be {what}, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How one model is laid out over ``dp·tp·pp·cp`` GPUs, and how it steps.

    >>> p = Plan(dp=8, tp=2, global_batch=256, micro_batch=4)
    >>> p.n_gpus, p.grad_accum, p.shard_stage
    (16, 8, 0)
    """

    dp: int = 1
    """data-parallel replicas (the ZeRO/FSDP shard group, with cp)"""
    tp: int = 1
    """tensor-parallel ranks (Megatron column/row split of every layer)"""
    pp: int = 1
    """pipeline stages"""
    cp: int = 1
    """context-parallel ranks (each holds seq_len / cp tokens of every sequence)"""
    virtual_stages: int = 1
    """model chunks per pipeline rank (interleaved 1F1B when > 1)"""
    zero: int = 0
    """ZeRO stage: 0 replicates everything; 1 shards optimizer states; 2 also gradients;
    3 also the weights (as FSDP full shard)"""
    fsdp: str | None = None
    """None, 'full' (ZeRO-3 over all data-parallel ranks) or 'hybrid' (ZeRO-3 within a node,
    replicated across nodes)"""
    sequence_parallel: bool = False
    """Megatron sequence parallelism: norms, dropout and residuals split over tp"""
    micro_batch: int = 1
    """sequences per micro-batch per data-parallel rank"""
    global_batch: int | None = None
    """sequences per optimizer step over all replicas (None: micro_batch·dp, no gradient
    accumulation)"""
    recompute: str = "none"
    """activation recompute: 'none', 'selective' (the attention core) or 'full' (each layer)"""
    ep: int = 1
    """expert-parallel ranks (mixtures of experts: E/ep experts on each), carved out of the
    dp·cp ranks as Megatron-LM does; the routed experts' weights and states are split over
    them and their tokens travel by all-to-all"""

    def __post_init__(self) -> None:
        for name in ("dp", "tp", "pp", "cp", "virtual_stages", "micro_batch", "ep"):
            _count(getattr(self, name), name)
        if (self.dp * self.cp) % self.ep:
            raise InputError(f"ep: {self.ep} expert-parallel ranks must divide the dp·cp = "
                             f"{self.dp * self.cp} data-parallel ranks they are taken from")
        zero = _count(self.zero, "zero", minimum=0)
        if zero > 3:
            raise InputError(f"zero: the ZeRO stage is 0, 1, 2 or 3, got {zero}")
        if self.fsdp is not None and self.fsdp not in FSDP_MODES:
            raise InputError(f"fsdp: must be None, 'full' or 'hybrid', got {self.fsdp!r}")
        if self.fsdp is not None and zero not in (0, 3):
            raise InputError(f"fsdp: FSDP shards like ZeRO-3; zero={zero} contradicts "
                             f"fsdp={self.fsdp!r} (leave zero at 0)")
        if not isinstance(self.sequence_parallel, bool):
            raise InputError(f"sequence_parallel: must be True or False, "
                             f"got {self.sequence_parallel!r}")
        if self.sequence_parallel and self.tp == 1:
            raise InputError("sequence_parallel: needs tp > 1 (it splits the sequence over "
                             "the tensor-parallel ranks)")
        rc = self.recompute
        if isinstance(rc, bool):  # estimate(recompute=True/False) of earlier versions
            object.__setattr__(self, "recompute", "full" if rc else "none")
        elif rc not in RECOMPUTE_MODES:
            raise InputError(f"recompute: must be 'none', 'selective' or 'full', got {rc!r}")
        if self.virtual_stages > 1 and self.pp == 1:
            raise InputError("virtual_stages: interleaving needs pp > 1")
        if self.global_batch is not None:
            gb = _count(self.global_batch, "global_batch")
            per_step = self.micro_batch * self.dp
            if gb % per_step:
                raise InputError(
                    f"global_batch: {gb} sequences is not a whole number of micro-batches "
                    f"over the data-parallel ranks (micro_batch {self.micro_batch} x dp "
                    f"{self.dp} = {per_step})")
            if self.pp > 1 and self.virtual_stages > 1 and (gb // per_step) % self.pp:
                raise InputError(
                    f"global_batch: interleaved 1F1B needs the micro-batches per step "
                    f"({gb // per_step}) to be a multiple of pp ({self.pp})")

    @property
    def n_gpus(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def grad_accum(self) -> int:
        """Micro-batches each data-parallel rank runs per optimizer step."""
        if self.global_batch is None:
            return 1
        return self.global_batch // (self.micro_batch * self.dp)

    @property
    def sequences_per_step(self) -> int:
        return self.micro_batch * self.dp * self.grad_accum

    @property
    def shard_stage(self) -> int:
        """The effective ZeRO stage (FSDP full or hybrid shard = 3)."""
        return 3 if self.fsdp is not None else self.zero

    @property
    def shard_group(self) -> int:
        """Ranks that shard weights, gradients and optimizer states (data × context)."""
        return self.dp * self.cp

    def label(self) -> str:
        """A short name: 'dp8 tp2 pp4 (v2) fsdp sp rc=full mb2 ga16'."""
        parts = [f"dp{self.dp}", f"tp{self.tp}", f"pp{self.pp}"]
        if self.virtual_stages > 1:
            parts.append(f"v{self.virtual_stages}")
        if self.cp > 1:
            parts.append(f"cp{self.cp}")
        if self.fsdp:
            parts.append("fsdp" if self.fsdp == "full" else "hsdp")
        elif self.zero:
            parts.append(f"zero{self.zero}")
        if self.sequence_parallel:
            parts.append("sp")
        if self.ep > 1:
            parts.append(f"ep{self.ep}")
        if self.recompute != "none":
            parts.append(f"rc={self.recompute}")
        parts += [f"mb{self.micro_batch}", f"ga{self.grad_accum}"]
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"dp": self.dp, "tp": self.tp, "pp": self.pp, "cp": self.cp,
                "virtual_stages": self.virtual_stages, "zero": self.zero, "fsdp": self.fsdp,
                "sequence_parallel": self.sequence_parallel, "micro_batch": self.micro_batch,
                "global_batch": self.global_batch, "recompute": self.recompute,
                "n_gpus": self.n_gpus, "grad_accum": self.grad_accum, "ep": self.ep}


def ranks_per_node(plan: Plan, dim: str, gpus_per_node: int) -> int:
    """How many ranks of one ``dim`` group share a node, in the tp-cp-dp-pp layout."""
    stride = 1
    for d in DIMS:
        if d == dim:
            break
        stride *= getattr(plan, d)
    size = getattr(plan, dim)
    if stride >= gpus_per_node:
        return 1
    return max(1, min(size, gpus_per_node // stride))


def shard_size(plan: Plan, gpus_per_node: int) -> int:
    """Ranks that split the weights, gradients and optimizer states: the dp·cp group, or,
    under FSDP hybrid shard, the part of it inside one scale-up domain (a divisor of it)."""
    group = plan.shard_group
    if plan.fsdp != "hybrid":
        return group
    shard = max(1, min(group, gpus_per_node // (plan.tp * plan.cp)))
    while group % shard:
        shard -= 1
    return shard


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup:
    """Everything below the public API needs, validated once by :func:`make_setup`."""

    gpu: Any
    """the GPU profile (``shapewise.hardware.catalog.GPU``)"""
    system: Any
    """the node around it (``shapewise.hardware.system.System``): the collectives' fabrics"""
    dtype: str
    """canonical training dtype (weights, activations, GEMMs)"""
    seq_len: int
    plan: Plan
    grad_reduce_dtype: str = "bf16"
    """dtype of the gradient reduce-scatter/all-reduce (fp32: Megatron's default and FSDP
    'DEFAULT' mixed precision; bf16: FSDP 'PURE')"""
    param_gather_dtype: str = "bf16"
    """dtype of the weights ZeRO-3/FSDP all-gathers (fp32 under FSDP mixed precision that
    keeps fp32 parameters, as Composer's 'DEFAULT' did in 2023)"""
    gpus_per_node: int = 8
    """GPUs in one scale-up domain (a node of 8 on HGX; the NVL72 rack): where TP and the
    innermost ranks of every group talk over NVLink/xGMI"""
    fused_loss: bool = False
    """the loss is one fused kernel over the bf16 logits that writes their gradient in place
    (flash-attn's CrossEntropyLoss, llm-foundry's default); False: PyTorch's cross_entropy,
    which makes fp32 copies of the logits"""
    attention_backend: str | None = None
    """the attention kernel (None: the framework's default dispatch); priced through the
    Attention op's ``backend``"""
    recipe: Any = None
    """the fp8 recipe of the layers' GEMMs (``shapewise.recipe.Recipe``; None: all in dtype)"""
    capacity_factor: float | None = None
    """mixtures of experts: tokens per expert capped at this × the mean (None: dropless)"""
    imbalance: float = 1.0
    """mixtures of experts, dropless: the busiest expert-parallel rank's tokens over the mean"""
    notes: tuple[str, ...] = field(default=())

    @property
    def micro_batch(self) -> int:
        return self.plan.micro_batch


def _resolve_hardware(gpu: Any) -> tuple[Any, Any, int]:
    """(GPU, System, GPUs per scale-up domain) from a GPU or system name or object.

    A GPU means its usual node (``get_system('h100')`` is the HGX H100); a GPU with no
    system ships gets a one-node stand-in (:func:`shapewise.cost.comm.system_for`)."""
    from shapewise.cost.comm import system_for
    from shapewise.hardware.catalog import GPU
    from shapewise.hardware.system import System, get_system

    if isinstance(gpu, System):
        system = gpu
    elif isinstance(gpu, GPU):  # this profile (it may differ from the catalog's), its node
        system = system_for(gpu)
        return gpu, system, int(system.domain_size)
    else:
        from shapewise.hardware.catalog import _NOT_ONE_DEVICE, _norm, get_gpu

        if not isinstance(gpu, str):
            raise InputError(f"gpu: expected a GPU or system name, got {gpu!r:.60}")
        if _norm(gpu) in _NOT_ONE_DEVICE:
            get_gpu(gpu)  # 'mi250x' is two GPUs: refused, naming 'mi250x-gcd'
        try:
            system = get_system(gpu, field_name="gpu")
        except InputError:
            system = system_for(get_gpu(gpu))  # names the field when the GPU is unknown
    return system.gpu, system, int(system.domain_size)


def _attention_backend(name: Any, gpu: Any, dtype: str, shape: Any, seq_len: int) -> str:
    """The backend id of ``name``, if it runs the shape's attention on ``gpu`` (both passes);
    InputError naming attention_backend otherwise."""
    from shapewise.cost.attention import check_backend, resolve_backend

    backend = resolve_backend(name, field_name="attention_backend")
    for backward in (False, True):
        try:
            check_backend(backend, gpu, dtype=dtype, head_dim=shape.head_dim,
                          seq_len=seq_len, seq_len_kv=seq_len, backward=backward)
        except InputError as exc:
            raise InputError("attention_" + str(exc)) from None
    return backend.name


def make_setup(shape: Any, *, gpu: Any, seq_len: int | None, plan: Plan, dtype: str = "bf16",
               grad_reduce_dtype: str | None = None, param_gather_dtype: str | None = None,
               n_gpus: int | None = None,
               profile: str | None = None, fused_loss: bool = False,
               attention_backend: str | None = None, recipe: Any = None,
               capacity_factor: float | None = None, imbalance: float = 1.0) -> Setup:
    """Validate ``plan`` against ``shape`` and the hardware, once; see the module doc."""
    from shapewise.cost.gemm import check_dim
    from shapewise.hardware.catalog import DTYPE_BYTES, canonical_dtype, load_profile
    from shapewise.model.params import check_tp
    from shapewise.model.run_defaults import default_seq_len
    from shapewise.model.shape import ModelShape, check_limit

    if not isinstance(shape, ModelShape):
        raise InputError(f"shape: expected a ModelShape, got {type(shape).__name__}")
    if not isinstance(plan, Plan):
        raise InputError(f"plan: expected a shapewise.Plan, got {type(plan).__name__}")
    if profile is not None:
        g, system, gpn = _resolve_hardware(load_profile(profile))
    elif gpu is None:
        raise InputError("gpu: required (a name such as 'h100', or profile=PATH)")
    else:
        g, system, gpn = _resolve_hardware(gpu)
    dt = canonical_dtype(dtype)
    g.peak_flops(dt)  # names dtype when the GPU has no such math
    if dt == "fp8":
        raise InputError("dtype: fp8 is a recipe, not a storage type: keep dtype='bf16' and "
                         "pass recipe= ('te-delayed', 'te-current', 'mxfp8', 'blockwise', "
                         "'mi300x')")
    if DTYPE_BYTES[dt] < 2:
        raise InputError(f"dtype: {dt} is not a training dtype")
    rd = canonical_dtype(grad_reduce_dtype or dt, field_name="grad_reduce_dtype")
    if rd not in ("fp32", "bf16", "fp16"):
        raise InputError(f"grad_reduce_dtype: gradients are reduced in fp32, bf16 or fp16, "
                         f"got {rd}")
    pg = canonical_dtype(param_gather_dtype or dt, field_name="param_gather_dtype")
    if pg not in ("fp32", "bf16", "fp16"):
        raise InputError(f"param_gather_dtype: weights are gathered in fp32, bf16 or fp16, "
                         f"got {pg}")
    check_limit("micro_batch", check_dim(plan.micro_batch, "micro_batch"))
    if shape.arch == "vit":
        if seq_len is not None and seq_len != shape.seq_len:
            raise InputError(f"seq_len: a ViT's tokens are fixed by image and patch size "
                             f"({shape.seq_len}), got {seq_len}")
        s = shape.seq_len
    else:
        s = check_limit("seq_len", check_dim(
            seq_len if seq_len is not None else default_seq_len(shape)[0], "seq_len"))
    check_limit("tp", check_dim(plan.tp, "tp"))
    check_tp(shape, plan.tp)
    L = shape.num_hidden_layers
    if plan.pp > L:
        raise InputError(f"pp: {plan.pp} pipeline stages exceed the {L} layers")
    if plan.pp * plan.virtual_stages > L:
        raise InputError(f"virtual_stages: pp x virtual_stages = "
                         f"{plan.pp * plan.virtual_stages} chunks exceed the {L} layers")
    if plan.cp > 1:
        if shape.arch == "vit":
            raise InputError("cp: context parallelism splits a causal sequence; not for ViT")
        if s % (2 * plan.cp):
            raise InputError(f"cp: seq_len {s} must split into 2·cp = {2 * plan.cp} equal "
                             f"chunks (load-balanced causal context parallelism)")
    if plan.sequence_parallel and s // plan.cp % plan.tp:
        raise InputError(f"sequence_parallel: tp {plan.tp} does not divide the "
                         f"{s // plan.cp} tokens per context-parallel rank")
    if n_gpus is not None:
        n = _count(n_gpus, "n_gpus")
        if plan.n_gpus != n:
            raise InputError(f"plan: dp·tp·pp·cp = {plan.dp}·{plan.tp}·{plan.pp}·{plan.cp} = "
                             f"{plan.n_gpus} GPUs, not n_gpus = {n}")
    if not isinstance(fused_loss, bool):
        raise InputError(f"fused_loss: must be True or False, got {fused_loss!r}")
    if attention_backend is not None:
        attention_backend = _attention_backend(attention_backend, g, dt, shape, s)
    from shapewise.cost.moe import check_routing
    from shapewise.model.moe import check_ep
    from shapewise.recipe import check_recipe

    check_ep(shape, plan.ep)
    check_routing(capacity_factor=capacity_factor, imbalance=imbalance)
    rec = check_recipe(recipe, g) if recipe is not None else None
    return Setup(gpu=g, system=system, dtype=dt, seq_len=s, plan=plan,
                 grad_reduce_dtype=rd, param_gather_dtype=pg, gpus_per_node=gpn,
                 fused_loss=fused_loss, attention_backend=attention_backend, recipe=rec,
                 capacity_factor=capacity_factor, imbalance=float(imbalance))
