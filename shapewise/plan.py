"""A parallel training plan, and the validated target and setup every entry point builds once.

:class:`Plan` says how one model is laid out over GPUs: data parallel (``dp``, optionally with
ZeRO 1–3 or FSDP), tensor parallel (``tp``, optionally with sequence parallelism), pipeline
parallel (``pp`` stages, 1F1B, interleaved over ``virtual_stages`` chunks per GPU), context
parallel (``cp``), the micro-batch, the global batch (sequences, from which gradient
accumulation follows) and activation recompute. It validates itself once, when built, in the
style of torchtitan's ``ParallelDims``: every field is checked on its own, then together.

:class:`Target` is what a step is priced on and how, before any model (gpu, system, dtype,
seq_len, micro-batch, the plan, the cluster, the recipe): :func:`make_target` is the one
builder from user values, called once at each public entry point (``recommend_shape`` and
``tune`` take a Target, or its fields one by one). :class:`Setup` is a target made concrete
for one model: :func:`make_setup` checks the plan against it (tp divides heads, KV heads, FFN
and vocabulary; pp at most the layers; cp divides the sequence) and nothing below it checks
again.

Rank layout (Megatron-LM's default order): tp innermost, then cp, dp, and pp outermost, so a
group of stride ``s`` (the product of the dims inside it) keeps ``gpus_per_node // s`` of its
ranks on one node.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass, field, fields
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
class Target:
    """What a training step is priced on and how, before any model is chosen: the hardware,
    the data types, the sequence length and the plan. Built once by :func:`make_target` at
    each public entry point (``recommend_shape``, ``tune``, and through :func:`make_setup`
    ``estimate`` and ``plan_training``); below it no GPU name or dtype is resolved again.

    >>> t = make_target(gpu="h100", seq_len=4096, micro_batch=2)
    >>> t.gpu.id, t.dtype, t.gpus_per_node, t.micro_batch, t.tp
    ('h100-sxm', 'bf16', 8, 2, 1)
    """

    gpu: Any
    """the GPU profile (``shapewise.hardware.catalog.GPU``)"""
    system: Any
    """the node around it (``shapewise.hardware.system.System``): the collectives' fabrics"""
    gpus_per_node: int = 8
    """GPUs in one scale-up domain (a node of 8 on HGX; the NVL72 rack): where TP and the
    innermost ranks of every group talk over NVLink/xGMI"""
    dtype: str = "bf16"
    """canonical training dtype (weights, activations, GEMMs)"""
    seq_len: int | None = None
    """tokens per sequence; None: the rule every command shares
    (:func:`shapewise.model.run_defaults.default_seq_len`: a text model's context capped at
    4096, 4096 before any model; a ViT's tokens are fixed by its image)"""
    plan: Plan = field(default_factory=Plan)
    """the plan (default one GPU): micro-batch, tp, recompute and the layout; what chooses
    plans itself (``plan_training``, a search over a cluster) varies it"""
    n_gpus: int | None = None
    """the cluster, for what chooses the plan (a search over a cluster): GPUs in all"""
    global_batch: int | None = None
    """the cluster's sequences per optimizer step (with ``n_gpus``)"""
    grad_reduce_dtype: str = "bf16"
    """dtype of the gradient reduce-scatter/all-reduce (fp32: Megatron's default and FSDP
    'DEFAULT' mixed precision; bf16: FSDP 'PURE'); default ``dtype``"""
    param_gather_dtype: str = "bf16"
    """dtype of the weights ZeRO-3/FSDP all-gathers (fp32 under FSDP mixed precision that
    keeps fp32 parameters, as Composer's 'DEFAULT' did in 2023); default ``dtype``"""
    fused_loss: bool = False
    """the loss is one fused kernel over the bf16 logits that writes their gradient in place
    (flash-attn's CrossEntropyLoss, llm-foundry's default); False: PyTorch's cross_entropy,
    which makes fp32 copies of the logits"""
    attention_backend: str | None = None
    """the attention kernel's id (None: the framework's default dispatch); whether it runs a
    model's attention is checked per model, by :func:`make_setup`"""
    recipe: Any = None
    """the fp8 recipe of the layers' GEMMs (``shapewise.recipe.Recipe``; None: all in dtype)"""
    capacity_factor: float | None = None
    """mixtures of experts: tokens per expert capped at this × the mean (None: dropless)"""
    imbalance: float = 1.0
    """mixtures of experts, dropless: the busiest expert-parallel rank's tokens over the mean"""

    @property
    def micro_batch(self) -> int:
        return self.plan.micro_batch

    @property
    def tp(self) -> int:
        return self.plan.tp

    def require_only(self, allowed: tuple[str, ...], *, by: str) -> None:
        """InputError naming the first setting ``by`` does not price: beyond gpu, dtype,
        seq_len, micro_batch and tp, only the fields ``allowed`` may be set."""
        p = self.plan
        settings = {
            "recompute": p.recompute != "none",
            "plan": any(getattr(p, f.name) != f.default for f in fields(Plan)
                        if f.name not in ("micro_batch", "tp", "recompute")),
            "n_gpus": self.n_gpus is not None, "global_batch": self.global_batch is not None,
            "recipe": self.recipe is not None,
            "attention_backend": self.attention_backend is not None,
            "grad_reduce_dtype": self.grad_reduce_dtype != self.dtype,
            "param_gather_dtype": self.param_gather_dtype != self.dtype,
            "fused_loss": self.fused_loss, "capacity_factor": self.capacity_factor is not None,
            "imbalance": self.imbalance != 1.0,
        }
        for name, is_set in settings.items():
            if is_set and name not in allowed:
                what = f"plan {p.label()}" if name == "plan" else name
                raise InputError(f"{name}: {by} does not price {what} (it takes gpu, dtype, "
                                 f"seq_len, micro_batch, tp"
                                 f"{''.join(', ' + a for a in allowed)})")


#: every field :func:`make_target` takes: what an entry point that takes ``target=`` also
#: accepts one by one (the keywords of earlier versions)
TARGET_FIELDS: tuple[str, ...] = (
    "gpu", "profile", "dtype", "seq_len", "plan", "micro_batch", "tp", "recompute", "ep",
    "n_gpus", "global_batch", "grad_reduce_dtype", "param_gather_dtype", "fused_loss",
    "attention_backend", "recipe", "capacity_factor", "imbalance")


def make_target(*, gpu: Any = None, profile: str | None = None, dtype: str = "bf16",
                seq_len: int | None = None, plan: Plan | None = None,
                micro_batch: int | None = None, tp: int | None = None,
                recompute: bool | str | None = None, ep: int | None = None,
                n_gpus: int | None = None, global_batch: int | None = None,
                grad_reduce_dtype: str | None = None, param_gather_dtype: str | None = None,
                fused_loss: bool = False, attention_backend: str | None = None,
                recipe: Any = None, capacity_factor: float | None = None,
                imbalance: float = 1.0) -> Target:
    """The one builder of a :class:`Target` from user values; InputError naming the field.

    ``gpu``: a GPU or system name or object (``profile``, a profile file, wins over it).
    ``plan`` (default one GPU), or the keywords of earlier versions that fill it and may
    not contradict an explicit one: ``micro_batch``, ``tp``, ``recompute`` (True/False or a
    mode) and ``ep`` (alone: ``Plan(dp=ep, ep=ep)``). ``n_gpus`` and ``global_batch``: the
    cluster, for what chooses the plan itself. The rest as :class:`Target` says.
    """
    from shapewise.cost.attention import resolve_backend
    from shapewise.cost.gemm import check_dim
    from shapewise.cost.moe import check_routing
    from shapewise.hardware.catalog import DTYPE_BYTES, canonical_dtype
    from shapewise.model.shape import check_limit
    from shapewise.recipe import check_recipe

    plan = _plan_of(plan, micro_batch=micro_batch, tp=tp, recompute=recompute, ep=ep)
    g, system, gpn = resolve_hardware(gpu, profile=profile)
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
    _check_sizes(plan)
    if seq_len is not None:
        seq_len = check_limit("seq_len", check_dim(seq_len, "seq_len"))
    cluster = [None if v is None else _count(v, name)
               for name, v in (("n_gpus", n_gpus), ("global_batch", global_batch))]
    if not isinstance(fused_loss, bool):
        raise InputError(f"fused_loss: must be True or False, got {fused_loss!r}")
    backend = None if attention_backend is None else resolve_backend(
        attention_backend, field_name="attention_backend").name
    check_routing(capacity_factor=capacity_factor, imbalance=imbalance)
    return Target(gpu=g, system=system, gpus_per_node=gpn, dtype=dt, seq_len=seq_len,
                  plan=plan, n_gpus=cluster[0], global_batch=cluster[1],
                  grad_reduce_dtype=rd, param_gather_dtype=pg, fused_loss=fused_loss,
                  attention_backend=backend,
                  recipe=check_recipe(recipe, g) if recipe is not None else None,
                  capacity_factor=capacity_factor, imbalance=float(imbalance))


#: make_target's defaults: a field at its default beside ``target=`` is not "given"
_DEFAULTS: dict[str, Any] = dict(make_target.__kwdefaults__ or {})


def target_from(target: Any, fields: dict[str, Any], *, takes: tuple[str, ...],
                by: str) -> Target:
    """The Target of an entry point that takes ``target=`` or, as earlier versions did, its
    fields one by one (``fields``, collected by ``**``): built here by :func:`make_target`.

    A keyword outside ``takes`` is a TypeError, as Python's own for an unknown keyword; a
    field given beside ``target=`` (not None, nor make_target's default) is an InputError
    naming it."""
    for name in fields:
        if name not in takes:
            raise TypeError(f"{by}() got an unexpected keyword argument {name!r}")
    if target is None:
        return make_target(**fields)
    if not isinstance(target, Target):
        raise InputError(f"target: expected a shapewise.Target (from shapewise.make_target), "
                         f"got {type(target).__name__}")
    for name, value in fields.items():
        if value is not None and not (name in _DEFAULTS and value == _DEFAULTS[name]):
            raise InputError(f"{name}: given twice, in target= and as {name}=; give it in one "
                             f"place (make_target({name}=...))")
    return target


def _check_sizes(plan: Plan) -> None:
    """The plan's sizes that are GEMM dimensions, within what a model trains at."""
    from shapewise.cost.gemm import check_dim
    from shapewise.model.shape import check_limit

    check_limit("micro_batch", check_dim(plan.micro_batch, "micro_batch"))
    check_limit("tp", check_dim(plan.tp, "tp"))


def _plan_of(plan: Plan | None, *, micro_batch: Any, tp: Any, recompute: Any,
             ep: Any = None) -> Plan:
    """The plan from the keywords of earlier versions; an explicit plan must agree with them."""
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


def resolve_hardware(gpu: Any, *, profile: str | None = None) -> tuple[Any, Any, int]:
    """(GPU, System, GPUs per scale-up domain) from a GPU or system name or object, or a
    profile file (``profile`` wins): how a target's hardware is resolved.

    A GPU means its usual node (``get_system('h100')`` is the HGX H100); a GPU with no
    system ships gets a one-node stand-in (:func:`shapewise.cost.comm.system_for`)."""
    from shapewise.cost.comm import system_for
    from shapewise.hardware.catalog import GPU, load_profile
    from shapewise.hardware.system import System, get_system

    if profile is not None:
        gpu = load_profile(profile)
    elif gpu is None:
        raise InputError("gpu: required (a name such as 'h100', or profile=PATH / --profile)")
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


def _of_target(name: str) -> Any:
    """A read-only attribute of Setup that is its target's ``name`` (read in the step's hot
    loop: ``attrgetter`` walks the dotted path in C)."""
    return property(operator.attrgetter(f"target.{name}"), doc=f"the target's {name}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup:
    """A :class:`Target` made concrete for one model: its plan and sequence length checked
    against the shape by :func:`make_setup`, once; everything below the API reads this."""

    target: Target
    """the hardware, dtypes and run settings (validated without the model)"""
    plan: Plan
    """the plan, checked against the model (tp divides heads, pp at most the layers, ...)"""
    seq_len: int
    """tokens per sequence: the target's, the shared default for this model, or a ViT's"""
    notes: tuple[str, ...] = field(default=())
    """sentences the step's Estimate carries"""

    @property
    def micro_batch(self) -> int:
        return self.plan.micro_batch

    # the target's settings, read through the setup as everything below the API reads them
    gpu = _of_target("gpu")
    system = _of_target("system")
    gpus_per_node = _of_target("gpus_per_node")
    dtype = _of_target("dtype")
    grad_reduce_dtype = _of_target("grad_reduce_dtype")
    param_gather_dtype = _of_target("param_gather_dtype")
    fused_loss = _of_target("fused_loss")
    attention_backend = _of_target("attention_backend")
    recipe = _of_target("recipe")
    capacity_factor = _of_target("capacity_factor")
    imbalance = _of_target("imbalance")


def make_setup(shape: Any, *, target: Target | None = None, plan: Plan | None = None,
               n_gpus: int | None = None, **fields: Any) -> Setup:
    """Check ``target`` (or the target :func:`make_target` builds from ``fields``) and its
    ``plan`` (default: the target's) against ``shape``, once; see the module doc.
    ``n_gpus``: the plan must use this many GPUs."""
    from shapewise.cost.gemm import check_dim
    from shapewise.model.moe import check_ep
    from shapewise.model.params import check_tp
    from shapewise.model.run_defaults import default_seq_len
    from shapewise.model.shape import ModelShape, check_limit

    if not isinstance(shape, ModelShape):
        raise InputError(f"shape: expected a ModelShape, got {type(shape).__name__}")
    if target is None:
        target = target_from(None, {**fields, "plan": plan}, takes=TARGET_FIELDS,
                             by="make_setup")
    else:
        target = target_from(target, fields, takes=TARGET_FIELDS, by="make_setup")
        if plan is None:
            plan = target.plan
        elif not isinstance(plan, Plan):
            raise InputError(f"plan: expected a shapewise.Plan, got {type(plan).__name__}")
        else:
            _check_sizes(plan)
    plan = target.plan if plan is None else plan
    seq_len = target.seq_len
    if shape.arch == "vit":
        if seq_len is not None and seq_len != shape.seq_len:
            raise InputError(f"seq_len: a ViT's tokens are fixed by image and patch size "
                             f"({shape.seq_len}), got {seq_len}")
        s = shape.seq_len
    else:
        s = seq_len if seq_len is not None else check_limit(
            "seq_len", check_dim(default_seq_len(shape)[0], "seq_len"))
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
    if target.attention_backend is not None:
        _check_attention(target, shape, s)
    check_ep(shape, plan.ep)
    return Setup(target=target, plan=plan, seq_len=s)


def _check_attention(target: Target, shape: Any, seq_len: int) -> None:
    """InputError naming attention_backend unless the target's backend runs the shape's
    attention on its GPU (both passes)."""
    from shapewise.cost.attention import check_backend, resolve_backend

    backend = resolve_backend(target.attention_backend, field_name="attention_backend")
    for backward in (False, True):
        try:
            check_backend(backend, target.gpu, dtype=target.dtype, head_dim=shape.head_dim,
                          seq_len=seq_len, seq_len_kv=seq_len, backward=backward)
        except InputError as exc:
            raise InputError("attention_" + str(exc)) from None
