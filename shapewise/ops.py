"""The op vocabulary of a training step: every kernel and collective shapewise prices.

One small frozen dataclass per kind of work, defined once and used everywhere: the step
estimate, the checker's rules, the live-model tracer, the bench plans and ``kernels/``.
The types are pure data (no torch, no cost model): :func:`shapewise.cost.price.price` turns
one into seconds on a GPU or system.

==============  ===========================================================================
type            what it is
==============  ===========================================================================
``Gemm``        C[m,n] = A[m,k]·B[k,n], ``batch`` times; ``backward()`` gives its two
                backward GEMMs, dA = dC·Bᵀ (m, k, n) and dB = Aᵀ·dC (k, n, m)
``Attention``   one fused attention call (forward, or its backward), GQA, causal, window
``MemoryBound`` a norm, activation, residual add, rotary, cross-entropy or optimizer pass
                over ``numel`` elements (bytes over bandwidth)
``Collective``  all-reduce, all-gather, reduce-scatter, send/recv or all-to-all within one
                process group, and whether it overlaps compute
==============  ===========================================================================

Byte conventions of :class:`Collective` (``nbytes``), as nccl-tests sizes them: all-reduce,
the buffer reduced; all-gather, the gathered output; reduce-scatter, the input before
scattering; all-to-all, what each rank sends in all; send/recv, one message.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal

from shapewise.errors import InputError

CollectiveKind = Literal["all_reduce", "all_gather", "reduce_scatter", "send_recv", "all_to_all"]
COLLECTIVE_KINDS: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter", "send_recv",
                                     "all_to_all")
#: process groups of a training plan: tensor, data (incl. FSDP/ZeRO shards), pipeline,
#: context and expert parallel
GroupName = Literal["tp", "dp", "pp", "cp", "ep"]
GROUP_NAMES: tuple[str, ...] = ("tp", "dp", "pp", "cp", "ep")


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name}: must be True or False, got {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Gemm:
    """C[m,n] = A[m,k]·B[k,n], ``batch`` independent times (a batched GEMM when > 1)."""

    m: int
    """output rows (tokens, for a linear layer's forward)"""
    n: int
    """output columns"""
    k: int
    """reduction dimension"""
    batch: int = 1
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        for name in ("m", "n", "k", "batch"):
            _positive(getattr(self, name), name)

    @property
    def flops(self) -> float:
        """2·batch·m·n·k (one multiply and one add per MAC)."""
        return 2.0 * self.batch * self.m * self.n * self.k

    def backward(self) -> tuple[Gemm, Gemm]:
        """dA = dC·Bᵀ as (m, k, n) and dB = Aᵀ·dC as (k, n, m): the same FLOPs each."""
        return (Gemm(m=self.m, n=self.k, k=self.n, batch=self.batch, dtype=self.dtype),
                Gemm(m=self.k, n=self.n, k=self.m, batch=self.batch, dtype=self.dtype))


@dataclass(frozen=True, slots=True, kw_only=True)
class Attention:
    """One fused attention call: ``heads`` query heads over ``kv_heads`` K/V heads."""

    batch: int
    heads: int
    seq_len: int
    """query positions"""
    head_dim: int
    """head dim of Q and K"""
    kv_heads: int | None = None
    """K/V heads (None: as many as ``heads``; fewer is GQA/MQA)"""
    seq_len_kv: int | None = None
    """key positions (None: ``seq_len``)"""
    head_dim_v: int | None = None
    """head dim of V and the output (None: ``head_dim``; MLA uses q/k 192, v 128)"""
    causal: bool = True
    window: int | None = None
    """causal sliding window in keys (None: none)"""
    backward: bool = False
    """the backward kernel (dQ, dK, dV) instead of the forward"""
    backend: str | None = None
    """the attention kernel (None: what the framework's default dispatch picks)"""
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        for name in ("batch", "heads", "seq_len", "head_dim"):
            _positive(getattr(self, name), name)
        for name in ("kv_heads", "seq_len_kv", "head_dim_v", "window"):
            if getattr(self, name) is not None:
                _positive(getattr(self, name), name)
        _flag(self.causal, "causal")
        _flag(self.backward, "backward")
        if self.heads % self.groups:
            raise InputError(f"kv_heads: {self.groups} must divide heads ({self.heads})")

    @property
    def groups(self) -> int:
        """K/V heads (``heads`` when not grouped)."""
        return self.heads if self.kv_heads is None else self.kv_heads


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryBound:
    """An element-wise or reduction pass over ``numel`` elements, bound by memory bandwidth."""

    op: str
    """a name from ``shapewise.cost.elementwise.OP_PASSES`` (layernorm, swiglu, ...)"""
    numel: int
    bytes_per_element: int = 2
    backward: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or not self.op:
            raise InputError(f"op: must be a non-empty name, got {self.op!r}")
        _positive(self.numel, "numel")
        _positive(self.bytes_per_element, "bytes_per_element")
        _flag(self.backward, "backward")


@dataclass(frozen=True, slots=True, kw_only=True)
class Collective:
    """One collective in one process group (``nbytes``: see the module doc)."""

    kind: CollectiveKind
    nbytes: float
    group: GroupName
    group_size: int
    """ranks in the group"""
    ranks_per_node: int | None = None
    """how many of the group's ranks share a node, i.e. a scale-up domain (8 on HGX, the
    72-GPU rack on GB200 NVL72); None: as many as the system's domain holds"""
    overlap: bool = False
    """whether it runs behind compute (then only what compute cannot hide is exposed)"""

    def __post_init__(self) -> None:
        if self.kind not in COLLECTIVE_KINDS:
            raise InputError(f"kind: {self.kind!r} is not a collective; "
                             f"known: {', '.join(COLLECTIVE_KINDS)}")
        if self.group not in GROUP_NAMES:
            raise InputError(f"group: {self.group!r} is not a process group; "
                             f"known: {', '.join(GROUP_NAMES)}")
        if (isinstance(self.nbytes, bool) or not isinstance(self.nbytes, numbers.Real)
                or not self.nbytes >= 0 or self.nbytes == float("inf")):
            raise InputError(f"nbytes: must be a finite non-negative number, got {self.nbytes!r}")
        _positive(self.group_size, "group_size")
        if self.ranks_per_node is not None:
            _positive(self.ranks_per_node, "ranks_per_node")
            if self.ranks_per_node > self.group_size:
                raise InputError(f"ranks_per_node: {self.ranks_per_node} exceeds group_size "
                                 f"({self.group_size})")
        _flag(self.overlap, "overlap")

    @property
    def nodes(self) -> int:
        """Nodes the group spans."""
        per = self.group_size if self.ranks_per_node is None else self.ranks_per_node
        return -(-self.group_size // per)


Op = Gemm | Attention | MemoryBound | Collective
