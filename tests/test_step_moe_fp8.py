"""The step with an fp8 recipe and with mixtures of experts (estimate(recipe=, ep=, ...))."""

from __future__ import annotations

from pathlib import Path

import pytest

from shapewise.errors import InputError
from shapewise.model import ModelShape, from_hf_config
from shapewise.model.flops import step_flops
from shapewise.recipe import fp8_weight_bytes, get_recipe
from shapewise.step import estimate

MOE = Path(__file__).resolve().parent / "fixtures" / "hf_moe"
# meta-llama/Meta-Llama-3-8B config.json
LLAMA3_8B = ModelShape.llama(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                             num_hidden_layers=32, intermediate_size=14336, vocab_size=128256,
                             max_position_embeddings=8192, name="llama-3-8b")


def _time(est, name: str) -> float:  # type: ignore[no-untyped-def]
    return sum(o.total_s for o in est.breakdown if o.name == name)


@pytest.mark.parametrize(("gpu", "recipe"), [("h100", "te-delayed"), ("h100", "te-current"),
                                             ("b200", "te-delayed"), ("b200", "mxfp8")])
@pytest.mark.parametrize(("micro_batch", "seq_len"), [(1, 8192), (2, 4096)])
def test_llama3_8b_fp8_speedup_is_what_public_runs_measured(gpu: str, recipe: str,
                                                             micro_batch: int,
                                                             seq_len: int) -> None:
    """Acceptance: fp8 over bf16 between 1.0x and 1.5x on H100 and B200 (docs/cost-model.md
    section 8 explains the figure: the GEMMs run ~1.7-2x faster, attention, logits, norms
    and the quantization kernels do not)."""
    bf16 = estimate(LLAMA3_8B, gpu=gpu, seq_len=seq_len, micro_batch=micro_batch)
    fp8 = estimate(LLAMA3_8B, gpu=gpu, seq_len=seq_len, micro_batch=micro_batch,
                   recipe=recipe)
    speedup = fp8.tokens_per_s / bf16.tokens_per_s
    assert 1.0 < speedup < 1.5, speedup
    # the layer GEMMs alone speed up by more: the rest of the step dilutes it
    gemms = ("qkv_proj", "out_proj", "mlp_gate_up", "mlp_down")
    assert sum(_time(bf16, n) for n in gemms) / sum(_time(fp8, n) for n in gemms) > speedup


def test_what_stays_in_bf16_and_what_is_added() -> None:
    bf16 = estimate(LLAMA3_8B, gpu="h100", seq_len=4096)
    fp8 = estimate(LLAMA3_8B, gpu="h100", seq_len=4096, recipe="te-delayed")
    assert _time(fp8, "logits") == _time(bf16, "logits")  # logits in bf16 by default
    assert _time(fp8, "attention") == _time(bf16, "attention")  # no fp8 attention asked
    assert _time(fp8, "fp8_quantize") > 0 and _time(bf16, "fp8_quantize") == 0
    both = estimate(LLAMA3_8B, gpu="h100", seq_len=4096,
                    recipe=get_recipe("te-delayed", fp8_attention=True, fp8_logits=True))
    assert _time(both, "logits") < _time(fp8, "logits")
    assert _time(both, "attention") < _time(fp8, "attention")
    # current scaling reads each tensor once more for its amax
    current = estimate(LLAMA3_8B, gpu="h100", seq_len=4096, recipe="te-current")
    assert _time(current, "fp8_quantize") == pytest.approx(1.5 * _time(fp8, "fp8_quantize"),
                                                           rel=0.05)
    # memory: the fp8 weight copies on top of the bf16 weights and fp32 masters
    assert fp8.memory["fp8_weights"] == fp8_weight_bytes(LLAMA3_8B)
    from shapewise.model.memory import ALLOCATOR_FRACTION

    added = fp8_weight_bytes(LLAMA3_8B) * (1 + ALLOCATOR_FRACTION)  # + allocator allowance
    assert fp8.memory_bytes - bf16.memory_bytes == pytest.approx(added, abs=2)
    assert fp8.memory["master_weights"] == bf16.memory["master_weights"]
    # model FLOPs do not depend on the recipe
    assert fp8.flops_per_step == bf16.flops_per_step


def test_fp8_refusals_name_the_field() -> None:
    with pytest.raises(InputError, match=r"^dtype: NVIDIA A100.*no fp8 tensor cores"):
        estimate(LLAMA3_8B, gpu="a100", seq_len=4096, recipe="te-delayed")
    with pytest.raises(InputError, match=r"^dtype: fp8 is a recipe, not a storage type"):
        estimate(LLAMA3_8B, gpu="h100", seq_len=4096, dtype="fp8")
    with pytest.raises(InputError, match=r"^recipe: mxfp8 runs on Blackwell"):
        estimate(LLAMA3_8B, gpu="h100", seq_len=4096, recipe="mxfp8")
    with pytest.raises(InputError, match=r"^recipe: nvfp4 needs fp4 tensor cores"):
        estimate(LLAMA3_8B, gpu="h100", seq_len=4096, recipe="nvfp4")


@pytest.mark.parametrize("name", ["mixtral-8x7b", "deepseek-v2-lite", "qwen1.5-moe-a2.7b",
                                  "gpt-oss-20b", "olmoe-1b-7b", "qwen3-30b-a3b"])
def test_moe_steps_are_priced_and_their_flops_are_the_models(name: str) -> None:
    shape = from_hf_config(MOE / name)
    for kw in ({}, {"ep": 2, "imbalance": 1.3}, {"capacity_factor": 1.25},
               {"recipe": "te-delayed"}):
        e = estimate(shape, gpu="h100", seq_len=4096, **kw)  # type: ignore[arg-type]
        assert e.step_time_s > 0 and 0 < e.mfu < 1
        # the breakdown's FLOPs are the model's (active parameters, MLA's attention widths)
        ops_flops = sum(o.flops * o.count for o in e.breakdown)
        assert ops_flops == pytest.approx(step_flops(shape, micro_batch=1,
                                                     seq_len=4096)["total"], rel=1e-9)


def test_expert_parallelism() -> None:
    mixtral = from_hf_config(MOE / "mixtral-8x7b")
    one = estimate(mixtral, gpu="h100", seq_len=4096)
    eight = estimate(mixtral, gpu="h100", seq_len=4096, ep=8)
    assert _time(one, "ep_dispatch") == 0 < _time(eight, "ep_dispatch")
    assert _time(eight, "ep_combine") == _time(eight, "ep_dispatch")
    # each rank holds 1/8 of the experts' weights and states: ~ 7/8 of 45 B params less
    assert one.memory_bytes - eight.memory_bytes > 0.8 * 7 / 8 * 45e9 * 16
    with pytest.raises(InputError, match=r"^ep: 3 does not divide num_experts 8"):
        estimate(mixtral, gpu="h100", seq_len=4096, ep=3)
    with pytest.raises(InputError, match=r"^ep: 2 needs a mixture-of-experts"):
        estimate(LLAMA3_8B, gpu="h100", seq_len=4096, ep=2)


def test_imbalance_and_capacity_cost_time_not_flops() -> None:
    mixtral = from_hf_config(MOE / "mixtral-8x7b")
    even = estimate(mixtral, gpu="h100", seq_len=4096, ep=8)
    skew = estimate(mixtral, gpu="h100", seq_len=4096, ep=8, imbalance=1.5)
    assert _time(skew, "experts_up") > 1.3 * _time(even, "experts_up")
    assert skew.flops_per_step == even.flops_per_step and skew.mfu < even.mfu
    capped = estimate(mixtral, gpu="h100", seq_len=4096, ep=8, capacity_factor=1.25,
                      imbalance=3.0)  # the capacity bounds the work whatever the skew
    assert _time(capped, "experts_up") < _time(skew, "experts_up")
    with pytest.raises(InputError, match=r"^imbalance: must be a number >= 1"):
        estimate(mixtral, gpu="h100", seq_len=4096, imbalance=0.5)
    with pytest.raises(InputError, match=r"^capacity_factor: must be a number >= 1"):
        estimate(mixtral, gpu="h100", seq_len=4096, capacity_factor=0)


def test_fp8_attention_runs_at_the_fitted_speedup() -> None:
    from shapewise.recipe import FP8_ATTENTION_SPEEDUP

    bf16 = estimate(LLAMA3_8B, gpu="b200", seq_len=8192, recipe="mxfp8")
    fp8 = estimate(LLAMA3_8B, gpu="b200", seq_len=8192,
                   recipe=get_recipe("mxfp8", fp8_attention=True))

    def phase(est, ph: str) -> float:  # type: ignore[no-untyped-def]
        return sum(o.total_s for o in est.breakdown if o.name == "attention" and o.phase == ph)

    assert phase(bf16, "forward") / phase(fp8, "forward") == pytest.approx(
        FP8_ATTENTION_SPEEDUP["forward"])
    assert phase(bf16, "backward") / phase(fp8, "backward") == pytest.approx(
        FP8_ATTENTION_SPEEDUP["backward"])


def test_expert_parallel_plan() -> None:
    from shapewise.model.memory import stage_params
    from shapewise.model.params import count_params, param_tensors
    from shapewise.plan import Plan

    with pytest.raises(InputError, match=r"^ep: 4 expert-parallel ranks must divide the "
                                         r"dp·cp = 2"):
        Plan(dp=2, ep=4)
    assert Plan(dp=8, ep=4).label().split()[3] == "ep4"
    ds = from_hf_config(MOE / "deepseek-v2-lite")
    routed = sum(p.layers * p.numel for p in param_tensors(ds) if p.routed)
    for ep in (1, 2):
        plan = Plan(dp=2, pp=3, ep=ep)
        # the three stages hold every parameter once, the routed experts split over ep
        held = sum(stage_params(ds, plan, i) for i in range(3))
        assert held == count_params(ds) - routed + routed // ep
    e = estimate(ds, gpu="h100", seq_len=4096, plan=Plan(dp=2, pp=3, ep=2, global_batch=12),
                 recipe="te-delayed")
    assert e.fits in (True, False) and len(e.stage_memory) == 3
    assert all(m > 0 for m in e.stage_memory)
    names = {o.name for o in e.breakdown}
    assert "ep_dispatch" in names and "fp8_quantize" in names
    with pytest.raises(InputError, match=r"^ep: 3 does not divide num_experts 64"):
        estimate(ds, gpu="h100", seq_len=4096, plan=Plan(dp=3, ep=3))


def test_plan_training_takes_a_recipe_and_expert_parallelism() -> None:
    from shapewise.planner import plan_training

    mixtral = from_hf_config(MOE / "mixtral-8x7b")
    best = plan_training(mixtral, gpu="h100", n_gpus=64, global_batch=512, seq_len=4096,
                         ep=8, recipe="te-delayed", top=3)
    assert best and all(e.plan.ep == 8 and e.fits for e in best)
    assert all(e.memory["fp8_weights"] > 0 for e in best)
    bf16 = plan_training(mixtral, gpu="h100", n_gpus=64, global_batch=512, seq_len=4096,
                         ep=8, top=1)[0]
    assert best[0].tokens_per_s > bf16.tokens_per_s
    with pytest.raises(InputError, match=r"^recipe: mxfp8 runs on Blackwell"):
        plan_training(mixtral, gpu="h100", n_gpus=8, global_batch=64, recipe="mxfp8")


@pytest.mark.parametrize(("dp", "zero"), [(8, 0), (64, 0), (64, 1)])
def test_expert_gradients_reduce_over_the_ranks_that_hold_the_same_experts(
        dp: int, zero: int) -> None:
    """Under ep, a GPU's routed experts are shared only with the dp·cp/ep ranks that hold the
    same ones (every ep-th rank: one per node when ep fills a node); the dense parameters
    with all dp·cp. With no overlap every collective is exposed whole, so the step's dp
    communication must equal those collectives, and differ from reducing all over dp·cp."""
    import dataclasses

    from shapewise.hardware.catalog import DTYPE_BYTES
    from shapewise.model.memory import stage_params, stage_routed_params
    from shapewise.plan import Plan, make_setup
    from shapewise.step import price_step
    from shapewise.step_ops import Pricer
    from shapewise.step_params import step_params

    shape = from_hf_config(MOE / "mixtral-8x7b" / "config.json")
    plan = Plan(dp=dp, ep=8, zero=zero)
    setup = make_setup(shape, gpu="h100", seq_len=4096, plan=plan)
    assert setup.gpus_per_node == 8
    prm = dataclasses.replace(step_params(setup.gpu), overlap_efficiency=0.0)
    est = price_step(shape, setup, params=prm)
    pr = Pricer(setup, prm)
    routed, held = stage_routed_params(shape, plan, 0), stage_params(shape, plan, 0)
    assert 0 < routed < held
    g = DTYPE_BYTES[setup.grad_reduce_dtype]
    kinds = ("all_reduce",) if zero == 0 else ("reduce_scatter",)

    def expected(kind: str, per: float, exp: int) -> float:
        t = pr.comm(kind, (held - routed) * per, "dp", plan=plan, size=dp)
        # the expert-data-parallel ranks are strided by ep: 8 // 8 = 1 per node
        return t + pr.comm(kind, routed * per, "dp", plan=plan, size=exp, per_node=1)

    for kind in kinds:
        got = est.exposed_comm.get(f"dp_{kind}", 0.0)
        want = expected(kind, g, dp // 8)
        assert got == pytest.approx(want, rel=1e-9)
        whole = pr.comm(kind, held * g, "dp", plan=plan, size=dp)  # the old, whole-group sum
        assert got != pytest.approx(whole, rel=1e-3)
    if dp == 8:  # one node: each GPU holds its experts alone, nothing to reduce for them
        assert est.exposed_comm["dp_all_reduce"] < pr.comm("all_reduce", held * g, "dp",
                                                           plan=plan, size=dp)
