"""The kernels of one mixture-of-experts MLP, as typed ops the step prices.

Per GPU, for T tokens of a micro-batch on this rank, E routed experts of width f_e, top-k,
tensor parallel t, expert parallel ep (E/ep whole experts per rank), bf16 activations:

=================  ====================================  ====================================
op                 forward                               notes
=================  ====================================  ====================================
router             Gemm (T, E, h)                        every token scores every expert
router_topk        MemoryBound over T·E fp32 scores      softmax/sigmoid and top-k
permute            MemoryBound over T·k·h                each token row copied to k experts
dispatch           all-to-all of T·k·h·2 bytes (ep > 1)  to the ranks holding the experts
experts            grouped Gemm (m_e, 2f_e/t, h) and     batch = E/ep experts; m_e tokens
                   (m_e, h, f_e/t), + SwiGLU             per expert (below)
combine            all-to-all of T·k·h·2 bytes (ep > 1)  the expert outputs back
unpermute          MemoryBound over T·k·h                weighted sum of each token's k rows
shared experts     dense Gemm (T, 2f_s/t, h), (T, h,     every token, like a dense MLP
                   f_s/t), + SwiGLU (+ its h×1 gate)
=================  ====================================  ====================================

Tokens per expert. The ep ranks route ep·T·k token slots to E experts, T·k·ep/E per expert
on average. *Dropless* (Megatron's default, MegaBlocks): the busiest rank waits on its share,
so an expert of it processes ``imbalance`` × the mean (imbalance = max over ranks of the
tokens routed there / the mean; 1.0 is perfect balance; an input, as it depends on the
router's training, not on the shape). With a *capacity factor* c every expert computes
exactly ceil(c · mean) rows (tokens past it are dropped, padding fills the rest), whatever
the imbalance.

A grouped GEMM is priced as one batched GEMM of E/ep problems (``Gemm.batch``): its tiles are
the sum of every expert's ceil(m_e/BM)·ceil(n/BN) tiles sharing the SMs, so small token
counts per expert pay the tile and wave quantization of the GEMM model. No parameter is
fitted for it: with H100's fp8 GEMM calibration (fitted on DeepGEMM's *dense* rows), the
20 grouped rows of ``deepgemm_h800_fp8.csv`` (held out of that fit) come out with a median
absolute error of 3% (``scripts/validate_moe.py``; docs/cost-model.md).
"""

from __future__ import annotations

import math
import numbers

from shapewise.errors import InputError
from shapewise.model.moe import check_ep
from shapewise.model.shape import ModelShape
from shapewise.ops import Collective, Gemm, MemoryBound, Op


def check_routing(*, capacity_factor: float | None, imbalance: float) -> None:
    """InputError naming ``capacity_factor`` or ``imbalance`` unless each is a finite
    number >= 1 (None capacity: dropless)."""
    if capacity_factor is not None and (
            isinstance(capacity_factor, bool) or not isinstance(capacity_factor, numbers.Real)
            or not math.isfinite(capacity_factor) or capacity_factor < 1):
        raise InputError(f"capacity_factor: must be a number >= 1 (None: dropless), "
                         f"got {capacity_factor!r}")
    if (isinstance(imbalance, bool) or not isinstance(imbalance, numbers.Real)
            or not math.isfinite(imbalance) or imbalance < 1):
        raise InputError(f"imbalance: must be a number >= 1 (1.0: every expert-parallel rank "
                         f"gets the mean), got {imbalance!r}")


def tokens_per_expert(shape: ModelShape, *, tokens: int, ep: int = 1,
                      capacity_factor: float | None = None, imbalance: float = 1.0) -> int:
    """Rows of each local expert's GEMM: ceil(imbalance · mean) dropless, or
    ceil(capacity_factor · mean) with a capacity (mean = tokens·k·ep/E)."""
    if not shape.is_moe:
        raise InputError("num_experts: a dense model has no experts")
    check_ep(shape, ep)
    check_routing(capacity_factor=capacity_factor, imbalance=imbalance)
    mean = tokens * shape.num_experts_per_tok * ep / shape.num_experts  # type: ignore[operator]
    factor = imbalance if capacity_factor is None else capacity_factor
    return max(1, math.ceil(factor * mean - 1e-9))


def moe_mlp_ops(shape: ModelShape, *, tokens: int, tp: int = 1, ep: int = 1,
                dtype: str = "bf16", gemm_dtype: str | None = None,
                capacity_factor: float | None = None, imbalance: float = 1.0,
                ep_ranks_per_node: int | None = None) -> list[tuple[str, Op]]:
    """The forward kernels of one MoE layer's MLP on one GPU, as ``(name, op)``.

    ``dtype``: activations and the all-to-all payload; ``gemm_dtype``: the expert and
    shared-expert GEMMs (an fp8 recipe's type; default ``dtype``). The router stays in
    ``dtype``. Each GEMM's backward is ``Gemm.backward()``, each memory-bound op's its
    ``backward=True`` twin, and each all-to-all runs again in the backward (the gradients
    retrace the route).
    """
    from shapewise.hardware.catalog import DTYPE_BYTES, canonical_dtype

    if not shape.is_moe:
        raise InputError("num_experts: a dense model has no MoE layer")
    dt = canonical_dtype(dtype)
    gdt = canonical_dtype(gemm_dtype) if gemm_dtype is not None else dt
    nb = DTYPE_BYTES[dt]
    h, e, k = shape.hidden_size, shape.num_experts, shape.num_experts_per_tok
    fe = shape.moe_intermediate_size
    glu = shape.activation == "swiglu"
    m_e = tokens_per_expert(shape, tokens=tokens, ep=ep, capacity_factor=capacity_factor,
                            imbalance=imbalance)
    local = e // ep  # type: ignore[operator]
    for name, size in (("moe_intermediate_size", fe), ("shared_expert_intermediate_size",
                                                        shape.shared_expert_intermediate_size)):
        if size is not None and size % tp:
            raise InputError(f"tp: {tp} does not divide {name} {size}")
    act = "swiglu" if glu else "gelu"
    slots = tokens * k  # type: ignore[operator]
    ops: list[tuple[str, Op]] = [
        ("router", Gemm(m=tokens, n=e, k=h, dtype=dt)),  # type: ignore[arg-type]
        ("router_topk", MemoryBound(op="router_topk", numel=tokens * e, bytes_per_element=4)),  # type: ignore[operator]
        ("moe_permute", MemoryBound(op="moe_permute", numel=slots * h, bytes_per_element=nb)),
    ]
    if ep > 1:
        ops.append(("ep_dispatch", Collective(kind="all_to_all", nbytes=float(slots * h * nb),
                                              group="ep", group_size=ep,
                                              ranks_per_node=ep_ranks_per_node)))
    up = (2 if glu else 1) * fe // tp  # type: ignore[operator]
    ops.append(("experts_up", Gemm(m=m_e, n=up, k=h, batch=local, dtype=gdt)))
    ops.append((f"experts_{act}", MemoryBound(op=act, numel=local * m_e * (fe // tp),  # type: ignore[operator]
                                              bytes_per_element=nb)))
    ops.append(("experts_down", Gemm(m=m_e, n=h, k=fe // tp, batch=local, dtype=gdt)))  # type: ignore[operator]
    if ep > 1:
        ops.append(("ep_combine", Collective(kind="all_to_all", nbytes=float(slots * h * nb),
                                             group="ep", group_size=ep,
                                             ranks_per_node=ep_ranks_per_node)))
    ops.append(("moe_unpermute", MemoryBound(op="moe_unpermute", numel=slots * h,
                                             bytes_per_element=nb)))
    if shape.num_shared_experts:
        fs = shape.shared_expert_intermediate_size // tp  # type: ignore[operator]
        ops.append(("shared_up", Gemm(m=tokens, n=(2 if glu else 1) * fs, k=h, dtype=gdt)))
        ops.append((f"shared_{act}", MemoryBound(op=act, numel=tokens * fs,
                                                 bytes_per_element=nb)))
        ops.append(("shared_down", Gemm(m=tokens, n=h, k=fs, dtype=gdt)))
        if shape.shared_expert_gate:
            ops.append(("shared_gate", Gemm(m=tokens, n=1, k=h, dtype=dt)))
    return ops
