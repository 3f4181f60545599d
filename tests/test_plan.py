"""Plan, Setup and the step under a plan: validation, the pipeline, sharding, memory, and
the properties of #10 (hypothesis)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shapewise as sw
from shapewise.errors import InputError
from shapewise.model.memory import plan_memory, stage_params
from shapewise.model.presets import get_preset
from shapewise.plan import Plan, make_setup, ranks_per_node
from shapewise.step import price_step
from shapewise.step_params import StepParams

LLAMA = get_preset("llama-2-7b")
SMALL = sw.ModelShape.llama(hidden_size=1024, num_attention_heads=16, num_key_value_heads=8,
                            num_hidden_layers=8, intermediate_size=2816, vocab_size=32000,
                            max_position_embeddings=2048, name="small")


# ------------------------------------------------------------------ Plan on its own


def test_plan_derives_accumulation_and_sharding() -> None:
    p = Plan(dp=8, tp=2, pp=2, micro_batch=2, global_batch=64, fsdp="full")
    assert p.n_gpus == 32 and p.grad_accum == 4 and p.shard_stage == 3
    assert p.sequences_per_step == 64
    assert Plan().grad_accum == 1 and Plan(zero=2).shard_stage == 2
    assert Plan(recompute=True).recompute == "full"  # earlier estimate() keywords
    assert Plan(recompute=False).recompute == "none"
    assert p.label() == "dp8 tp2 pp2 fsdp mb2 ga4"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"dp": 0}, "dp"), ({"tp": 1.5}, "tp"), ({"pp": True}, "pp"), ({"zero": 4}, "zero"),
    ({"fsdp": "yes"}, "fsdp"), ({"fsdp": "full", "zero": 2}, "fsdp"),
    ({"recompute": "some"}, "recompute"), ({"sequence_parallel": True}, "sequence_parallel"),
    ({"virtual_stages": 2}, "virtual_stages"),
    ({"dp": 4, "micro_batch": 3, "global_batch": 100}, "global_batch"),
    ({"pp": 4, "virtual_stages": 2, "global_batch": 6}, "global_batch"),
])
def test_a_bad_plan_names_its_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=rf"^{field}:"):
        Plan(**kwargs)


@pytest.mark.parametrize(("plan", "field"), [
    (Plan(tp=3), "tp"),  # does not divide 32 heads
    (Plan(tp=16), "tp"),  # divides 16 query heads, not 8 KV heads
    (Plan(pp=9), "pp"),  # more stages than the 8 layers
    (Plan(pp=4, virtual_stages=4, global_batch=4), "virtual_stages"),
    (Plan(tp=2, cp=3, sequence_parallel=True), "cp"),
])
def test_a_plan_that_does_not_suit_the_model_names_its_field(plan: Plan, field: str) -> None:
    shape = SMALL if field != "tp" or plan.tp == 16 else LLAMA
    with pytest.raises(InputError, match=rf"^{field}:"):
        make_setup(shape, gpu="h100", seq_len=2048, plan=plan)


def test_the_plan_must_use_every_gpu() -> None:
    with pytest.raises(InputError, match=r"^plan: .* = 8 GPUs, not n_gpus = 16"):
        make_setup(LLAMA, gpu="h100", seq_len=4096, plan=Plan(dp=4, tp=2), n_gpus=16)
    with pytest.raises(InputError, match=r"^plan:"):
        sw.plan_training(SMALL, gpu="h100", n_gpus=16, global_batch=64, seq_len=2048,
                         plans=[Plan(dp=8, global_batch=64)])


def test_ranks_per_node_follows_the_tp_cp_dp_pp_layout() -> None:
    p = Plan(dp=16, tp=4, pp=2)
    assert ranks_per_node(p, "tp", 8) == 4
    assert ranks_per_node(p, "dp", 8) == 2  # stride 4: two dp ranks per 8-GPU node
    assert ranks_per_node(p, "pp", 8) == 1  # stride 64: every stage on its own node


# ------------------------------------------------------------------ estimate(plan=)


def test_old_keywords_fill_the_plan_and_may_not_contradict_it() -> None:
    a = sw.estimate(LLAMA, gpu="h100", seq_len=4096, tp=2, micro_batch=2, recompute=True)
    b = sw.estimate(LLAMA, gpu="h100", seq_len=4096,
                    plan=Plan(tp=2, micro_batch=2, recompute="full"))
    assert a.step_time_s == b.step_time_s and a.plan == b.plan and a.recompute
    with pytest.raises(InputError, match=r"^tp:"):
        sw.estimate(LLAMA, gpu="h100", seq_len=4096, tp=4, plan=Plan(tp=2))
    with pytest.raises(InputError, match=r"^plan:"):
        sw.estimate(LLAMA, gpu="h100", seq_len=4096, plan={"tp": 2})


def test_categories_sum_to_the_step_and_fsdp_fits_what_one_gpu_cannot() -> None:
    one = sw.estimate(LLAMA, gpu="h100", seq_len=4096)
    assert not one.fits  # 16 bytes/param of 6.7B params alone exceed 80 GB
    fsdp = sw.estimate(LLAMA, gpu="h100", seq_len=4096,
                       plan=Plan(dp=8, fsdp="full", micro_batch=1, global_batch=64))
    assert fsdp.fits and fsdp.memory_bytes < 80 * 2**30
    assert sum(fsdp.categories.values()) == pytest.approx(fsdp.step_time_s)
    assert fsdp.exposed_comm and set(fsdp.exposed_comm) <= {
        "dp_all_gather", "dp_reduce_scatter", "dp_all_reduce"}
    # per GPU: 64 sequences over 8 GPUs in one step
    assert fsdp.tokens_per_s == pytest.approx(64 * 4096 / fsdp.step_time_s / 8)


def test_pipeline_bubble_shrinks_with_micro_batches_and_interleaving() -> None:
    def bubble(gb: int, v: int = 1) -> float:
        e = sw.estimate(SMALL, gpu="h100", seq_len=2048,
                        plan=Plan(pp=4, virtual_stages=v, micro_batch=1, global_batch=gb))
        return e.bubble_fraction

    assert bubble(4) > bubble(16) > bubble(64) > 0
    assert bubble(16, v=2) < bubble(16)
    e = sw.estimate(SMALL, gpu="h100", seq_len=2048, plan=Plan(pp=4, global_batch=8))
    # the last stage also runs the logits and loss: the stages are not balanced
    assert e.categories["imbalance"] > 0 and "pp_send_recv" in e.exposed_comm
    assert e.stage_memory[0] > e.stage_memory[1]  # the first stage holds 4 micro-batches


def test_sequence_parallel_and_recompute_shrink_activations() -> None:
    def acts(**kw: object) -> int:
        plan = Plan(tp=4, micro_batch=2, **kw)  # type: ignore[arg-type]
        setup = make_setup(LLAMA, gpu="h100", seq_len=4096, plan=plan)
        return plan_memory(LLAMA, setup)["activations"]

    none, sp, full = acts(), acts(sequence_parallel=True), acts(recompute="full")
    assert sp < none and full < none / 4
    # Korthikanti eq. 2 (sequence parallel): every part of the layer splits over t
    setup = make_setup(LLAMA, gpu="h100", seq_len=4096, plan=Plan(micro_batch=2))
    assert sp == pytest.approx(plan_memory(LLAMA, setup)["activations"] / 4, rel=1e-6)


def test_zero_stages_shard_in_order() -> None:
    def states(**kw: object) -> dict[str, int]:
        setup = make_setup(LLAMA, gpu="h100", seq_len=4096,
                           plan=Plan(dp=8, global_batch=8, **kw))  # type: ignore[arg-type]
        return plan_memory(LLAMA, setup)

    z = [states(zero=k) for k in range(4)]
    n = stage_params(LLAMA, Plan(), 0)
    assert z[0]["optimizer_states"] == 8 * n and z[1]["optimizer_states"] == 8 * n // 8
    assert z[1]["gradients"] == 2 * n and z[2]["gradients"] == 2 * n // 8
    assert z[2]["weights"] == 2 * n and z[3]["weights"] == 2 * n // 8
    assert z[3]["total"] < z[2]["total"] < z[1]["total"] < z[0]["total"]
    assert states(fsdp="full")["weights"] == z[3]["weights"]


def test_fp8_steps_are_refused_with_a_reason() -> None:
    # fp8 is a recipe over bf16 storage (shapewise.recipe), not a dtype
    with pytest.raises(InputError, match=r"^dtype: fp8 is a recipe, not a storage type"):
        sw.estimate(LLAMA, gpu="h100", seq_len=4096, dtype="fp8")


# ------------------------------------------------------------------ properties

SHAPES = st.sampled_from([SMALL, get_preset("gpt2").replace(vocab_size=50304),
                         get_preset("qwen2-0.5b")])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=SHAPES, tp=st.sampled_from([1, 2]), pp=st.sampled_from([1, 2]),
       mb=st.sampled_from([1, 2, 4]), ga=st.sampled_from([1, 2, 8]),
       chain=st.sampled_from([(1, 2, 4), (1, 8, 16, 64, 256)]), data=st.data())
def test_adding_data_parallel_gpus_never_raises_tokens_per_gpu(shape, tp, pp, mb, ga, chain,
                                                               data) -> None:
    # Replicated optimizer (DDP): each GPU's work is fixed; the gradient all-reduce only
    # grows with the group. (ZeRO/FSDP shard the optimizer step, which then shrinks as 1/dp;
    # and a whole 8-GPU NVSwitch node all-reduces through NVLink SHARP, faster than 4 GPUs
    # of it by ring, so 4 -> 8 is not in one chain.)
    dps = data.draw(st.lists(st.sampled_from(chain), min_size=2, max_size=4, unique=True))
    rates = []
    for dp in sorted(dps):
        plan = Plan(dp=dp, tp=tp, pp=pp, micro_batch=mb, global_batch=mb * dp * ga)
        rates.append(sw.estimate(shape, gpu="h100", seq_len=1024, plan=plan).tokens_per_s)
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(rates))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=SHAPES, dp=st.sampled_from([1, 2, 8, 32]), tp=st.sampled_from([1, 2]),
       pp=st.sampled_from([1, 2, 4]), shard=st.sampled_from([{}, {"zero": 1}, {"zero": 2},
                                                             {"fsdp": "full"}]),
       rc=st.sampled_from(["none", "selective", "full"]), mb=st.sampled_from([1, 4]))
def test_memory_never_falls_below_the_sharded_weights(shape, dp, tp, pp, shard, rc,
                                                      mb) -> None:
    plan = Plan(dp=dp, tp=tp, pp=pp, micro_batch=mb, global_batch=mb * dp * 4, recompute=rc,
                **shard)
    e = sw.estimate(shape, gpu="h100", seq_len=1024, plan=plan)
    per_gpu = max(stage_params(shape, plan, i) for i in range(pp))
    sharded = 2 * per_gpu // (dp if plan.shard_stage == 3 else 1)
    assert e.memory_bytes >= sharded
    assert e.memory_bytes == max(e.stage_memory)


@settings(max_examples=20, deadline=None)
@given(shape=SHAPES, mb=st.sampled_from([1, 2, 8]), ga=st.sampled_from([1, 3]),
       rc=st.sampled_from(["none", "full"]))
def test_one_gpu_is_the_kernels_plus_optimizer_and_overheads(shape, mb, ga, rc) -> None:
    prm = StepParams(sustained_clock=0.9, kernel_overhead_s=7e-6, step_overhead_s=0.01)
    setup = make_setup(shape, gpu="a100", seq_len=1024,
                       plan=Plan(micro_batch=mb, global_batch=mb * ga, recompute=rc))
    e = price_step(shape, setup, params=prm)
    kernels = sum(op.total_s for op in e.breakdown)
    one = price_step(shape, dataclasses.replace(setup, plan=Plan(micro_batch=mb,
                                                                   recompute=rc)), params=prm)
    one_kernels = sum(op.total_s for op in one.breakdown)
    assert kernels == pytest.approx(ga * one_kernels)
    assert e.step_time_s == pytest.approx(kernels + e.categories["optimizer"]
                                          + e.categories["overhead"])
    launches = sum(op.count for op in e.breakdown if op.kind in ("gemm", "attention", "memory"))
    assert e.categories["overhead"] == pytest.approx(launches * 7e-6 + 0.01)
    assert e.categories["bubble"] == e.categories["imbalance"] == 0
    assert not e.exposed_comm


def test_a_sustained_clock_slows_only_math_bound_kernels() -> None:
    setup = make_setup(SMALL, gpu="h100", seq_len=2048, plan=Plan(micro_batch=4))
    fast = price_step(SMALL, setup, params=StepParams())
    slow = price_step(SMALL, setup, params=StepParams(sustained_clock=0.8))
    for a, b in zip(fast.breakdown, slow.breakdown, strict=True):
        if a.kind in ("gemm", "attention"):
            assert b.time_s == pytest.approx(a.time_s / 0.8)
        elif a.kind == "memory":
            assert b.time_s == a.time_s


def test_hybrid_shard_splits_states_within_a_node_only() -> None:
    # 64 H100 = 8 nodes: FSDP hybrid shards over the 8 GPUs of a node, replicates across
    full = make_setup(LLAMA, gpu="h100", seq_len=4096,
                      plan=Plan(dp=64, fsdp="full", global_batch=64))
    hybrid = dataclasses.replace(full, plan=Plan(dp=64, fsdp="hybrid", global_batch=64))
    n = stage_params(LLAMA, Plan(), 0)
    assert plan_memory(LLAMA, full)["optimizer_states"] == 8 * n // 64
    assert plan_memory(LLAMA, hybrid)["optimizer_states"] == 8 * n // 8
    e = price_step(LLAMA, hybrid)
    assert "dp_all_reduce" in e.exposed_comm  # the shard's gradients across the nodes


def test_attention_backend_is_resolved_once_and_named_when_unknown() -> None:
    setup = make_setup(SMALL, gpu="h100", seq_len=2048, plan=Plan(),
                       attention_backend="flash_attention_2")
    assert setup.attention_backend == "fa2"  # the alias, resolved to its id
    e = price_step(SMALL, setup)
    assert e.tokens_per_s > 0
    with pytest.raises(InputError, match=r"^attention_backend: unknown"):
        sw.estimate(SMALL, gpu="h100", seq_len=2048, attention_backend="nope")
