"""SW012-SW014: the mixture-of-experts rules fire, stay quiet, and price the expert GEMMs."""

from __future__ import annotations

from pathlib import Path

import pytest

import shapewise as sw
from shapewise.check.rules import RULES, run_rules, shape_context
from shapewise.cost.price import price
from shapewise.errors import InputError
from shapewise.hardware.catalog import get_gpu
from shapewise.model import from_hf_config
from shapewise.ops import Gemm

MOE = Path(__file__).resolve().parents[1] / "fixtures" / "hf_moe"


def _shape(name: str):  # type: ignore[no-untyped-def]
    return from_hf_config(MOE / name)


def _ids(findings) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.rule_id for f in findings]


def test_registered() -> None:
    assert {"SW012", "SW013", "SW014"} <= set(RULES)


def test_published_moe_models_are_quiet_at_their_settings() -> None:
    h100 = get_gpu("h100")
    for name in ("mixtral-8x7b", "deepseek-v3", "qwen3-30b-a3b", "olmoe-1b-7b",
                 "qwen1.5-moe-a2.7b", "deepseek-v2-lite", "gpt-oss-20b"):
        ctx = shape_context(_shape(name), gpu=h100, seq_len=4096, ep=1)
        assert not [f for f in run_rules(ctx) if f.rule_id in ("SW012", "SW013", "SW014")], name


def test_misaligned_expert_ffn() -> None:
    shape = _shape("mixtral-8x7b").replace(moe_intermediate_size=14300)
    found = [f for f in sw.check_shape(shape, gpu="h100", seq_len=4096) if f.rule_id == "SW012"]
    assert len(found) == 1
    f = found[0]
    assert (f.field, f.value, f.fix, f.basis) == ("moe_intermediate_size", 14300, 14272,
                                                    "throughput")
    assert f.severity == "warning"  # 14300 is not even 16-byte aligned
    # the speedup is the cost model's: expert GEMMs (fwd + 2 bwd) per FLOP, old over new
    def per_flop(fe: int) -> float:
        gs = [Gemm(m=1024, n=2 * fe, k=4096, batch=8), Gemm(m=1024, n=4096, k=fe, batch=8)]
        t = sum(price(x, "h100") for g in gs for x in (g, *g.backward()))
        return t / sum(g.flops for g in gs)
    assert f.gemm_speedup == pytest.approx(per_flop(14300) / per_flop(14272))
    assert f.gemm_speedup > 1.05


def test_experts_not_divisible_by_ep() -> None:
    found = sw.check_shape(MOE / "mixtral-8x7b", gpu="h100", seq_len=4096, ep=3)
    assert _ids(found) == ["SW013"]
    assert (found[0].severity, found[0].value, found[0].fix) == ("error", 3, 2)
    assert "ep 3 does not divide num_experts 8" in found[0].message
    with pytest.raises(InputError, match=r"ep: must be a positive integer"):
        sw.check_shape(MOE / "mixtral-8x7b", gpu="h100", ep=0)


def test_tokens_per_expert_below_a_tile() -> None:
    # DeepSeek-V3, s=1024, b=1, no EP: 1024·8/256 = 32 tokens per expert
    found = [f for f in sw.check_shape(MOE / "deepseek-v3", gpu="h100", seq_len=1024)
             if f.rule_id == "SW014"]
    assert len(found) == 1 and found[0].fix == 2 and found[0].value == 1
    assert "32 tokens per expert" in found[0].message
    assert found[0].gemm_speedup is not None and found[0].gemm_speedup > 1.5
    # with 8-way expert parallelism each expert gets 256 tokens: quiet
    assert "SW014" not in _ids(sw.check_shape(MOE / "deepseek-v3", gpu="h100", seq_len=1024,
                                              ep=8))
