"""recommend_moe_shape: MoE shapes for a total and an active budget, tile-aligned experts."""

from __future__ import annotations

import pytest

import shapewise as sw
from shapewise.errors import InputError
from shapewise.search.moe import EXPERT_COUNTS, EXPERT_FFN_MULTIPLE, recommend_moe_shape


def test_mixtral_budget_finds_aligned_shapes_mixtral_among_them() -> None:
    found = recommend_moe_shape(total_params=46.7e9, active_params=12.9e9, gpu="h100", ep=8,
                                top=10)
    assert 1 <= len(found) <= 10
    for c in found:
        s = c.shape
        assert s.is_moe and s.num_experts in EXPERT_COUNTS and s.num_experts % 8 == 0
        assert s.moe_intermediate_size % EXPERT_FFN_MULTIPLE == 0
        assert abs(c.total_params / 46.7e9 - 1) <= 0.1
        assert abs(c.active_params / 12.9e9 - 1) <= 0.1
        assert c.estimate.tokens_per_s > 0
    scores = [c.score for c in found]
    assert scores == sorted(scores, reverse=True)
    # Mixtral-8x7B's own layout is on the grid and within the budgets
    assert any((c.shape.hidden_size, c.shape.num_hidden_layers, c.shape.num_experts,
                c.shape.num_experts_per_tok, c.shape.moe_intermediate_size)
               == (4096, 32, 8, 2, 14336) for c in found)
    # deterministic
    again = recommend_moe_shape(total_params=46.7e9, active_params=12.9e9, gpu="h100", ep=8,
                                top=10)
    assert [c.shape for c in again] == [c.shape for c in found]
    assert sw.recommend_moe_shape is recommend_moe_shape


def test_bad_budgets_name_the_field() -> None:
    with pytest.raises(InputError, match=r"^active_params: .* must be below total_params"):
        recommend_moe_shape(total_params=1e9, active_params=2e9, gpu="h100")
    with pytest.raises(InputError, match=r"^total_params: must be a parameter count"):
        recommend_moe_shape(total_params=float("nan"), active_params=1e9, gpu="h100")
    with pytest.raises(InputError, match=r"^total_params: no shape of the grid"):
        recommend_moe_shape(total_params=1e14, active_params=2e6, gpu="h100")
    with pytest.raises(InputError, match=r"^recipe: mxfp8 runs on Blackwell"):
        recommend_moe_shape(total_params=7e9, active_params=1.3e9, gpu="h100",
                            recipe="mxfp8")


def test_recommend_shape_arch_moe_routes_to_the_moe_grid() -> None:
    from shapewise.search.recommend import Recommendation, recommend_shape

    rec = recommend_shape(arch="moe", params=47e9, active_params=13e9, gpu="h100",
                          seq_len=4096, ep=8, top_k=4)
    assert isinstance(rec, Recommendation) and rec.method == "grid"
    assert rec.evaluated >= len(rec.candidates) >= 1 and rec.baselines == ()
    grid = recommend_moe_shape(total_params=47e9, active_params=13e9, gpu="h100",
                               seq_len=4096, ep=8, vocab_size=32000, tolerance=0.05, top=4)
    assert [c.shape for c in rec.candidates] == [c.shape for c in grid]
    assert rec.best == grid[0].shape
    for c in rec.candidates:
        s = c.shape
        assert s.num_experts % 8 == 0 and s.moe_intermediate_size % EXPERT_FFN_MULTIPLE == 0
        assert abs(c.params / 47e9 - 1) <= 0.05
        assert abs(sw.count_params(s, active=True) / 13e9 - 1) <= 0.05
    best = rec.to_dict()["best"]
    assert best["num_experts"] == rec.best.num_experts
    assert best["active_params"] == sw.count_params(rec.best, active=True)
    assert "grouped-GEMM tile" in rec.candidates[0].reason


def test_recommend_shape_arch_moe_bad_budgets_name_the_field() -> None:
    from shapewise.search.recommend import recommend_shape

    with pytest.raises(InputError, match=r"^active_params: required with arch='moe'"):
        recommend_shape(arch="moe", params=47e9, gpu="h100")
    with pytest.raises(InputError, match=r"^active_params: 5e\+10 must be below params"):
        recommend_shape(arch="moe", params=47e9, active_params=50e9, gpu="h100")
    with pytest.raises(InputError, match=r"^active_params: only with arch='moe'"):
        recommend_shape(arch="llama", params=1e9, active_params=5e8, gpu="h100")
    with pytest.raises(InputError, match=r"^n_gpus: not supported with arch='moe'"):
        recommend_shape(arch="moe", params=47e9, active_params=13e9, gpu="h100", n_gpus=8,
                        global_batch=64)
