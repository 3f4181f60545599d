"""The plan rules (SW016-SW019): each fires on a plan that breaks it, stays quiet on one that
does not, and prices its fix with the step model."""

from __future__ import annotations

import pytest

import shapewise as sw
from shapewise.model.presets import get_preset

LLAMA = get_preset("llama-2-7b")


def plan_findings(plan: sw.Plan, shape: sw.ModelShape = LLAMA) -> dict[str, sw.Finding]:
    fs = sw.check_shape(shape, gpu="h100", seq_len=4096, plan=plan)
    return {f.rule_id: f for f in fs if f.rule_id in ("SW016", "SW017", "SW018", "SW019")}


def test_no_plan_no_plan_findings() -> None:
    fs = sw.check_shape(LLAMA, gpu="h100", seq_len=4096)
    assert not {f.rule_id for f in fs} & {"SW016", "SW017", "SW018", "SW019"}


def test_sw016_interleaved_chunks_need_whole_layers() -> None:
    f = plan_findings(sw.Plan(pp=4, virtual_stages=3, global_batch=12))["SW016"]
    assert f.severity == "error" and f.value == 32 and f.fix == 36
    assert "SW016" not in plan_findings(sw.Plan(pp=4, virtual_stages=2, global_batch=16))


def test_sw017_fewer_micro_batches_than_stages() -> None:
    f = plan_findings(sw.Plan(pp=8, global_batch=4))["SW017"]
    assert f.severity == "warning" and f.fix == 8 and f.step_speedup > 1
    assert "SW017" not in plan_findings(sw.Plan(pp=8, global_batch=64))


def test_sw018_bubble_above_threshold_and_its_fix_meets_it() -> None:
    from shapewise.check.rules.schedule import BUBBLE_THRESHOLD

    f = plan_findings(sw.Plan(pp=8, global_batch=16))["SW018"]
    assert f.fix == 63  # (8 − 1)·0.9/0.1 micro-batches of one sequence
    fixed = sw.estimate(LLAMA, gpu="h100", seq_len=4096, plan=sw.Plan(pp=8, global_batch=63))
    assert fixed.bubble_fraction <= BUBBLE_THRESHOLD + 0.01 and f.step_speedup > 1.2
    assert "SW018" not in plan_findings(sw.Plan(pp=8, global_batch=128))


def test_sw019_a_plan_that_does_not_fit_is_an_error_with_a_plan_that_does() -> None:
    f = plan_findings(sw.Plan(dp=8, micro_batch=4, global_batch=64))["SW019"]
    assert f.severity == "error" and f.field == "plan" and f.fix
    assert "fsdp" in f.fix
    fits = plan_findings(sw.Plan(dp=8, micro_batch=1, global_batch=64, fsdp="full"))
    assert "SW019" not in fits


@pytest.mark.parametrize("plan", [sw.Plan(pp=4, global_batch=4), sw.Plan(tp=2, dp=2,
                                                                          global_batch=8)])
def test_plan_settings_replace_tp_and_stages(plan: sw.Plan) -> None:
    rep = sw.check_shape(LLAMA, gpu="h100", seq_len=4096, plan=plan)
    assert isinstance(rep, list)
