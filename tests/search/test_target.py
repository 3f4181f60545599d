"""The one way in (#14): a Target built once by make_target, taken by recommend_shape and
tune whole or field by field, never resolved again below the entry point."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

import shapewise as sw
from shapewise import plan as plan_mod
from shapewise.errors import InputError
from shapewise.tuning.study import StudyRequest


def _count_resolutions(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every GPU/system resolution and every Target built, from now on."""
    calls: list[object] = []
    real_hw, real_target = plan_mod.resolve_hardware, plan_mod.make_target

    def hw(gpu: object, **kw: object) -> object:
        calls.append(("hardware", gpu))
        return real_hw(gpu, **kw)

    def target(**kw: object) -> object:
        calls.append(("target", kw.get("gpu")))
        return real_target(**kw)

    monkeypatch.setattr(plan_mod, "resolve_hardware", hw)
    monkeypatch.setattr(plan_mod, "make_target", target)
    return calls


# ----------------------------------------------------------------- the object
def test_make_target_validates_once_and_is_frozen() -> None:
    t = sw.make_target(gpu="h100", seq_len=4096, micro_batch=2, tp=2, recipe="te-delayed")
    assert (t.gpu.id, t.dtype, t.seq_len, t.micro_batch, t.tp) == ("h100-sxm", "bf16", 4096,
                                                                 2, 2)
    assert t.gpus_per_node == 8 and t.system.gpu is t.gpu and t.recipe.name == "te-delayed"
    assert t.grad_reduce_dtype == t.param_gather_dtype == "bf16"
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.dtype = "fp16"  # type: ignore[misc]
    assert sw.Target is plan_mod.Target and sw.make_target is plan_mod.make_target


@pytest.mark.parametrize(("kw", "field"), [
    ({}, "gpu: required"),
    ({"gpu": "h1000"}, "gpu: unknown GPU 'h1000'"),
    ({"gpu": "h100", "dtype": "fp8"}, "dtype: fp8 is a recipe"),
    ({"gpu": "v100", "dtype": "bf16"}, "dtype: .* has no bf16 math"),
    ({"gpu": "h100", "seq_len": 0}, "seq_len: must be a positive integer"),
    ({"gpu": "h100", "micro_batch": -1}, "micro_batch: must be a positive integer"),
    ({"gpu": "h100", "tp": 2, "plan": sw.Plan(tp=4)}, "tp: 2 contradicts plan.tp"),
    ({"gpu": "h100", "n_gpus": 0}, "n_gpus: must be a positive integer"),
    ({"gpu": "a100", "recipe": "mxfp8"}, "dtype: .* has no fp8 tensor cores"),
    ({"gpu": "h100", "attention_backend": "nope"}, "attention_backend: unknown"),
    ({"gpu": "h100", "imbalance": 0.5}, "imbalance: must be a number >= 1"),
])
def test_bad_target_fields_are_named(kw: dict, field: str) -> None:
    with pytest.raises(InputError, match="^" + field):
        sw.make_target(**kw)


def test_setup_is_the_target_made_concrete_for_one_model() -> None:
    shape = sw.ModelShape.llama(hidden_size=2048, num_attention_heads=16, num_hidden_layers=16,
                                vocab_size=32000, max_position_embeddings=2048)
    t = sw.make_target(gpu="h100", micro_batch=2)
    setup = sw.make_setup(shape, target=t)
    assert setup.target is t and setup.seq_len == 2048  # the shared rule: its context
    assert (setup.gpu, setup.dtype, setup.micro_batch) == (t.gpu, "bf16", 2)
    assert sw.make_setup(shape, gpu="h100", plan=sw.Plan(micro_batch=2)).seq_len == 2048
    with pytest.raises(InputError, match="tp: 3 does not divide"):
        sw.make_setup(shape, target=t, plan=sw.Plan(tp=3))
    # one target prices many models: estimate takes it too
    assert sw.estimate(shape, target=t) == sw.estimate(shape, gpu="h100", micro_batch=2)
    with pytest.raises(InputError, match=r"^micro_batch: given twice"):
        sw.estimate(shape, target=t, micro_batch=4)
    with pytest.raises(InputError, match="gpu: given twice"):
        sw.make_setup(shape, target=t, gpu="a100")


# ----------------------------------------------------------------- recommend_shape
def test_recommend_builds_the_target_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_resolutions(monkeypatch)
    rec = sw.recommend_shape(params=350e6, gpu="a100", arch="llama")
    # one target, one hardware lookup, for every shape, baseline and plan priced
    assert calls == [("target", "a100"), ("hardware", "a100")], calls
    assert rec.evaluated >= 4 and rec.baselines and rec.plan is not None
    calls.clear()
    sw.recommend_shape(params=350e6, gpu="h100", n_gpus=8, global_batch=64, top_k=2)
    assert calls == [("target", "h100"), ("hardware", "h100")], calls  # plans too
    calls.clear()
    sw.recommend_shape(arch="moe", params=47e9, active_params=13e9, gpu="h100", ep=8,
                       top_k=2)
    assert calls == [("target", "h100"), ("hardware", "h100")], calls  # the MoE grid too
    target = sw.make_target(gpu="a100")
    calls.clear()
    sw.recommend_shape(params=350e6, target=target, arch="llama")
    assert calls == [], calls


def test_old_keywords_give_the_same_recommendation_as_a_target() -> None:
    kw = dict(gpu="a100", seq_len=2048, tp=2, micro_batch=2, recompute=True, dtype="bf16")
    old = sw.recommend_shape(params=350e6, arch="llama", top_k=3, **kw)
    new = sw.recommend_shape(params=350e6, arch="llama", top_k=3,
                             target=sw.make_target(**kw))
    assert old.to_dict() == new.to_dict()
    assert old.inputs["recompute"] is True and old.inputs["seq_len"] == 2048


def test_a_cluster_and_a_recipe_travel_in_the_target() -> None:
    t = sw.make_target(gpu="h100", n_gpus=8, global_batch=64, recipe="te-delayed")
    rec = sw.recommend_shape(params=350e6, target=t, top_k=2)
    assert rec.inputs["n_gpus"] == 8 and rec.inputs["recipe"] == "te-delayed"
    assert rec.plan is not None and rec.plan.plan.n_gpus == 8


def test_both_target_and_a_field_is_an_error_naming_the_field() -> None:
    t = sw.make_target(gpu="h100")
    llama = sw.ModelShape.llama(hidden_size=2048, num_attention_heads=16,
                                num_hidden_layers=16, vocab_size=32000)
    with pytest.raises(InputError, match=r"^dtype: given twice"):
        sw.plan_training(llama, target=t, n_gpus=8, global_batch=64, dtype="fp16")
    best = sw.plan_training(llama, target=t, n_gpus=8, global_batch=64, top=1)[0]
    assert best == sw.plan_training(llama, gpu="h100", n_gpus=8, global_batch=64, top=1)[0]
    with pytest.raises(InputError, match=r"^seq_len: given twice, in target= and as seq_len="):
        sw.recommend_shape(params=350e6, target=t, seq_len=2048)
    with pytest.raises(InputError, match=r"^target: expected a shapewise.Target"):
        sw.recommend_shape(params=350e6, target="h100")


def test_unknown_keywords_are_still_a_type_error() -> None:
    with pytest.raises(TypeError, match="recommend_shape\\(\\) got an unexpected keyword "
                                        "argument 'gpus'"):
        sw.recommend_shape(params=350e6, gpus="h100")
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_gpus'"):
        sw.exhaustive_search(params=350e6, gpu="h100", n_gpus=8)
    with pytest.raises(TypeError, match="make_setup\\(\\) got an unexpected keyword"):
        sw.make_setup(sw.ModelShape.gpt(hidden_size=768, num_attention_heads=12,
                                        num_hidden_layers=12), gpu="h100", gpus=8)
    with pytest.raises(TypeError, match="tune\\(\\) got an unexpected keyword argument "
                                        "'fused_loss'"):
        sw.tune(study="x", gpu="h100", fused_loss=True)


def test_a_target_setting_the_search_does_not_price_is_refused() -> None:
    with pytest.raises(InputError, match=r"^plan: recommend_shape does not price plan dp2"):
        sw.recommend_shape(params=350e6, target=sw.make_target(gpu="h100",
                                                               plan=sw.Plan(dp=2)))
    with pytest.raises(InputError, match=r"^plan: recommend_shape does not price plan "
                                         r"dp1 tp2 pp1 sp"):
        sw.recommend_shape(params=350e6, target=sw.make_target(
            gpu="h100", plan=sw.Plan(tp=2, sequence_parallel=True)))
    with pytest.raises(InputError, match=r"^attention_backend: recommend_shape does not"):
        sw.recommend_shape(params=350e6, target=sw.make_target(gpu="h100",
                                                               attention_backend="fa2"))
    with pytest.raises(InputError, match=r"^recipe: tune does not price"):
        StudyRequest.parse(params=1e8, target=sw.make_target(gpu="h100", recipe="te-delayed"))


# ----------------------------------------------------------------- tune
def test_tune_request_from_a_target_asks_all_its_fields() -> None:
    t = sw.make_target(gpu="h100", seq_len=512, micro_batch=2)
    whole = StudyRequest.parse(params=350e6, target=t, arch="llama", top_k=4)
    loose = StudyRequest.parse(params=350e6, gpu="h100", seq_len=512, micro_batch=2,
                               arch="llama", top_k=4)
    assert whole.asked() == {**loose.asked(), "dtype": "bf16", "tp": 1}
    assert whole.config() == {**loose.config()}
    assert whole.stage_one_target(whole.config()) is t
    built = loose.stage_one_target(loose.config())
    assert (built.gpu.id, built.seq_len, built.micro_batch) == ("h100-sxm", 512, 2)
    with pytest.raises(InputError, match=r"^gpu: given twice"):
        StudyRequest.parse(params=350e6, target=t, gpu="a100")


def test_a_joining_worker_may_still_give_any_field_alone() -> None:
    req = StudyRequest.parse(seq_len=512)
    assert req.gpu is None and req.target is None and req.asked()["seq_len"] == 512
    with pytest.raises(InputError, match=r"^seq_len: must be a positive integer"):
        StudyRequest.parse(seq_len=0)


# ----------------------------------------------------------------- the CLI
def test_cli_recommend_builds_the_target_from_its_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shapewise", "recommend", "--params", "350M", "--gpu", "a100",
         "--arch", "llama", "--seq-len", "2048", "--tp", "2", "--top", "3", "--json"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    doc = json.loads(out)
    api = sw.recommend_shape(params=350e6, target=sw.make_target(gpu="a100", seq_len=2048,
                                                                 tp=2), arch="llama", top_k=3)
    assert doc["best"] == json.loads(json.dumps(api.to_dict()))["best"]
    assert doc["inputs"]["tp"] == 2 and doc["inputs"]["seq_len"] == 2048
    bad = subprocess.run(
        [sys.executable, "-m", "shapewise", "recommend", "--params", "350M", "--gpu", "h100",
         "--dtype", "fp8"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "dtype: fp8 is a recipe" in bad.stderr and "Traceback" not in bad.stderr
