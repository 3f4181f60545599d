"""The MoE layer's kernels: tokens per expert, grouped GEMMs, routing ops and all-to-all."""

from __future__ import annotations

import pytest

from shapewise.cost.moe import moe_mlp_ops, tokens_per_expert
from shapewise.cost.price import price
from shapewise.errors import InputError
from shapewise.model import ModelShape
from shapewise.ops import Collective, Gemm, MemoryBound

MIXTRAL = ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                           num_hidden_layers=32, intermediate_size=14336, num_experts=8,
                           num_experts_per_tok=2, name="mixtral-8x7b")
DSV2_LITE_LIKE = ModelShape.llama(hidden_size=2048, num_attention_heads=16, num_hidden_layers=4,
                                  intermediate_size=10944, moe_intermediate_size=1408,
                                  num_experts=64, num_experts_per_tok=6, num_shared_experts=2,
                                  num_dense_layers=1)


def test_tokens_per_expert() -> None:
    # 4096 tokens, top-2 of 8: 1024 per expert on average
    assert tokens_per_expert(MIXTRAL, tokens=4096) == 1024
    assert tokens_per_expert(MIXTRAL, tokens=4096, imbalance=1.25) == 1280
    # EP 4: each rank's 4096 tokens reach 2 local experts out of 8 (mean still 1024 each
    # over the group's 4·4096·2 slots / 8 experts = 4096)
    assert tokens_per_expert(MIXTRAL, tokens=4096, ep=4) == 4096
    # a capacity factor pads every expert to c·mean whatever the imbalance
    assert tokens_per_expert(MIXTRAL, tokens=4096, capacity_factor=1.5, imbalance=3.0) == 1536
    with pytest.raises(InputError, match=r"^ep: 3 does not divide num_experts 8"):
        tokens_per_expert(MIXTRAL, tokens=4096, ep=3)
    with pytest.raises(InputError, match=r"^capacity_factor: must be a number >= 1"):
        tokens_per_expert(MIXTRAL, tokens=4096, capacity_factor=0.5)
    with pytest.raises(InputError, match=r"^imbalance: must be a number >= 1"):
        tokens_per_expert(MIXTRAL, tokens=4096, imbalance=0.9)


def test_ops_of_one_layer() -> None:
    ops = dict(moe_mlp_ops(MIXTRAL, tokens=4096))
    assert ops["router"] == Gemm(m=4096, n=8, k=4096)
    # all 8 experts local: one grouped GEMM of 8 problems of 1024 tokens
    assert ops["experts_up"] == Gemm(m=1024, n=2 * 14336, k=4096, batch=8)
    assert ops["experts_down"] == Gemm(m=1024, n=4096, k=14336, batch=8)
    assert ops["moe_permute"] == MemoryBound(op="moe_permute", numel=4096 * 2 * 4096)
    assert "ep_dispatch" not in ops and "shared_up" not in ops
    # the expert GEMMs do k/E of a dense MLP's work: 2 of 8 experts per token
    flops = ops["experts_up"].flops + ops["experts_down"].flops
    assert flops == 2 * 4096 * 2 * 3 * 4096 * 14336


def test_expert_parallel_all_to_all_and_fp8_experts() -> None:
    ops = dict(moe_mlp_ops(MIXTRAL, tokens=4096, ep=4, tp=2, gemm_dtype="fp8"))
    assert ops["experts_up"] == Gemm(m=4096, n=14336, k=4096, batch=2, dtype="fp8")
    assert ops["router"].dtype == "bf16"  # the router stays in the activation type
    a2a = ops["ep_dispatch"]
    assert isinstance(a2a, Collective) and a2a.kind == "all_to_all" and a2a.group == "ep"
    assert a2a.nbytes == 4096 * 2 * 4096 * 2 and a2a.group_size == 4
    assert ops["ep_combine"] == a2a  # the expert outputs travel back the same way
    assert price(a2a, "h100") > 0


def test_shared_experts_run_for_every_token() -> None:
    ops = dict(moe_mlp_ops(DSV2_LITE_LIKE, tokens=8192))
    assert ops["shared_up"] == Gemm(m=8192, n=2 * 2816, k=2048)
    assert ops["shared_down"] == Gemm(m=8192, n=2048, k=2816)
    assert ops["experts_up"].batch == 64 and ops["experts_up"].m == 768  # 8192·6/64


def test_few_tokens_per_expert_run_below_the_dense_rate() -> None:
    """Waves per expert: the same FLOPs split over more, smaller experts run slower."""
    few = Gemm(m=64, n=2816, k=2048, batch=64)  # 64 tokens per expert: half-empty tiles
    many = Gemm(m=4096, n=2816, k=2048, batch=1)
    assert few.flops == many.flops
    assert price(few, "h100") > 1.3 * price(many, "h100")


def test_dense_model_has_no_moe_ops() -> None:
    with pytest.raises(InputError, match=r"^num_experts: a dense model"):
        moe_mlp_ops(ModelShape.llama(hidden_size=1024, num_attention_heads=8,
                                     num_hidden_layers=2), tokens=128)
