"""The parts of a transformer layer that depend on its architecture and on the fp8 recipe:
the attention projections (plain or latent), the MLP (dense or mixture of experts), and the
quantization kernels an fp8 recipe adds. The step (:mod:`shapewise.step`) lays them out per
layer with the norms, residuals, attention core and tensor-parallel communication.

Each function returns the *forward* ops of one layer on one GPU as ``(name, op)``: a
:class:`~shapewise.ops.Gemm` has the two backward GEMMs of ``Gemm.backward()``, a
:class:`~shapewise.ops.MemoryBound` its ``backward=True`` twin, a
:class:`~shapewise.ops.Collective` (expert-parallel all-to-all) runs again in the backward.

Latent attention (MLA, DeepSeek-V2/V3), per GPU with T tokens, a heads, d_qk = nope + rope,
d_v, ranks r_q and r_kv, t tensor-parallel ranks (the down-projections are replicated, as
in Megatron-LM's MLA; the up-projections split by heads):

    q        (T, a·d_qk/t, h), or q_a (T, r_q, h) and q_b (T, a·d_qk/t, r_q)
    kv_a     (T, r_kv + rope, h)
    kv_b     (T, a·(nope + d_v)/t, r_kv)
    out      (T, h, a·d_v/t)
"""

from __future__ import annotations

from shapewise.cost.moe import moe_mlp_ops
from shapewise.model.shape import ModelShape
from shapewise.ops import Gemm, MemoryBound, Op
from shapewise.recipe import Recipe


def attention_projections(shape: ModelShape, *, tokens: int, tp: int = 1,
                          gemm_dtype: str = "bf16") -> tuple[list[tuple[str, Gemm]],
                                                             list[tuple[str, Gemm]]]:
    """The GEMMs before the attention core (Q, K, V) and after it (the output projection)."""
    T, h, a, t = tokens, shape.hidden_size, shape.num_attention_heads, tp
    d, dt = shape.head_dim, gemm_dtype
    assert d is not None
    out = [("out_proj", Gemm(m=T, n=h, k=shape.v_size // t, dtype=dt))]
    if not shape.mla:
        qkv = (a + 2 * shape.kv_heads) * d // t
        return [("qkv_proj", Gemm(m=T, n=qkv, k=h, dtype=dt))], out
    r_kv, rope = shape.kv_lora_rank, shape.qk_rope_head_dim
    assert r_kv is not None and rope is not None
    nope = d - rope
    before: list[tuple[str, Gemm]] = []
    if shape.q_lora_rank is None:
        before.append(("q_proj", Gemm(m=T, n=a * d // t, k=h, dtype=dt)))
    else:
        before.append(("q_a_proj", Gemm(m=T, n=shape.q_lora_rank, k=h, dtype=dt)))
        before.append(("q_b_proj", Gemm(m=T, n=a * d // t, k=shape.q_lora_rank, dtype=dt)))
    before.append(("kv_a_proj", Gemm(m=T, n=r_kv + rope, k=h, dtype=dt)))
    before.append(("kv_b_proj", Gemm(m=T, n=a * (nope + shape.v_dim) // t, k=r_kv, dtype=dt)))
    return before, out


def mlp_ops(shape: ModelShape, *, moe: bool, tokens: int, tp: int = 1, ep: int = 1,
            dtype: str = "bf16", gemm_dtype: str | None = None,
            capacity_factor: float | None = None, imbalance: float = 1.0,
            ep_ranks_per_node: int | None = None) -> list[tuple[str, Op]]:
    """One layer's MLP: dense (up or gate+up fused, the activation, down) or, for an MoE
    layer, :func:`shapewise.cost.moe.moe_mlp_ops`."""
    from shapewise.hardware.catalog import DTYPE_BYTES, canonical_dtype

    gdt = gemm_dtype or dtype
    if moe:
        return moe_mlp_ops(shape, tokens=tokens, tp=tp, ep=ep, dtype=dtype, gemm_dtype=gdt,
                           capacity_factor=capacity_factor, imbalance=imbalance,
                           ep_ranks_per_node=ep_ranks_per_node)
    T, h, f, t = tokens, shape.hidden_size, shape.ffn_size, tp
    nb = DTYPE_BYTES[canonical_dtype(dtype)]
    if shape.activation == "swiglu":
        return [("mlp_gate_up", Gemm(m=T, n=2 * f // t, k=h, dtype=gdt)),
                ("swiglu", MemoryBound(op="swiglu", numel=T * f // t, bytes_per_element=nb)),
                ("mlp_down", Gemm(m=T, n=h, k=f // t, dtype=gdt))]
    return [("mlp_up", Gemm(m=T, n=f // t, k=h, dtype=gdt)),
            ("gelu", MemoryBound(op="gelu", numel=T * f // t, bytes_per_element=nb)),
            ("mlp_down", Gemm(m=T, n=h, k=f // t, dtype=gdt))]


#: GEMMs that stay in the activation type under every recipe: the router (its softmax or
#: sigmoid decides the routing) and Qwen's one-column shared-expert gate.
BF16_GEMMS = ("router", "shared_gate")


def quantize_ops(recipe: Recipe | None, ops: list[tuple[str, Op]]
                 ) -> list[tuple[str, str, MemoryBound]]:
    """The recipe's quantization kernels for the fp8 GEMMs among ``ops``, as
    ``(name, phase, op)``: 'fp8_quantize' before the forward (X, W) and the backward (dY)."""
    if recipe is None:
        return []
    out = []
    for name, op in ops:
        if isinstance(op, Gemm) and op.dtype == recipe.gemm_dtype and name not in BF16_GEMMS:
            for phase, q in recipe.quantize_ops(op):
                out.append(("fp8_quantize", phase, q))
    return out
