"""SW010 and plan judge "does it fit" with one function (shapewise.model.memory.memory_fit):
on the boundary where the old SW010 budget (90% of the catalog GB in 1e9 bytes) and plan's
(the catalog GB as GiB, the 5% + 1 GiB allocator allowance on the need side) disagreed,
check now says what plan says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shapewise import ModelShape, estimate, get_gpu
from shapewise.check import rules as R
from shapewise.check.rules import shape_context
from shapewise.errors import InputError
from shapewise.model.memory import (
    ALLOCATOR_FRACTION,
    CONTEXT_BYTES,
    gpu_capacity_bytes,
    memory_fit,
)
from shapewise.plan import Plan
from shapewise.planner import plan_training

H100 = get_gpu("h100")
GIB = 2**30


def model(layers: int) -> ModelShape:
    # a 3B-class Llama whose tp-1 step sits near 80 GB as its layer count grows
    return ModelShape.llama(hidden_size=3072, num_attention_heads=24,
                            num_hidden_layers=layers, intermediate_size=8192)


def plan_fits_tp1(shape: ModelShape) -> bool:
    """plan's verdict on one GPU at tp 1, micro-batch 1, no recompute."""
    try:
        plan_training(shape, gpu=H100, n_gpus=1, global_batch=1, seq_len=4096,
                      plans=[Plan(dp=1, tp=1, micro_batch=1)])
    except InputError:
        return False
    return True


def test_memory_fit_is_plan_memory_against_the_gib_capacity() -> None:
    assert gpu_capacity_bytes(H100) == int(H100.memory_gb * GIB)
    fit = memory_fit(gpu_capacity_bytes(H100) + GIB, H100)
    assert not fit.fits and fit.over_bytes == GIB
    assert "1.0 GiB over" in fit.describe()
    assert f"{ALLOCATOR_FRACTION:.0%} + {CONTEXT_BYTES / GIB:g} GiB" in fit.describe()
    assert memory_fit(gpu_capacity_bytes(H100), H100).fits  # the boundary itself fits


def test_sw010_agrees_with_plan_on_the_boundary_that_used_to_disagree() -> None:
    inside = model(32)  # fits plan's budget at tp 1, but not 90% of 80e9 bytes
    tp1 = estimate(inside, gpu=H100, tp=1, seq_len=4096)
    old_budget = 0.9 * H100.memory_gb * 1e9
    assert old_budget < tp1.memory_bytes <= gpu_capacity_bytes(H100), tp1.memory_bytes
    # plan and estimate price the same memory
    assert plan_fits_tp1(inside) and tp1.fits
    found = R.tp_oversized(shape_context(inside, gpu=H100, tp=2, seq_len=4096))
    assert [f.fix for f in found] == [1]
    assert bool(found) == plan_fits_tp1(inside)
    # past the capacity: plan refuses tp 1 and SW010 stays quiet
    outside = model(36)
    assert not estimate(outside, gpu=H100, tp=1, seq_len=4096).fits
    assert not plan_fits_tp1(outside)
    assert R.tp_oversized(shape_context(outside, gpu=H100, tp=2, seq_len=4096)) == []


@pytest.mark.parametrize("layers", [32, 36])
def test_check_cli_says_what_plan_says(tmp_path: Path, layers: int) -> None:
    path = tmp_path / "shape.json"
    path.write_text(json.dumps(model(layers).to_dict()))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "shapewise", *args], capture_output=True,
                              text=True, timeout=300, check=False)

    chk = run("check", str(path), "--gpu", "h100", "--tp", "2", "--seq-len", "4096")
    assert chk.returncode in (0, 1), chk.stderr
    pln = run("plan", str(path), "--gpu", "h100", "--gpus", "1", "--global-batch", "1",
              "--seq-len", "4096", "--json")
    plan_fits = pln.returncode == 0 and any(
        p["plan"]["tp"] == 1 and p["plan"]["recompute"] == "none"
        for p in json.loads(pln.stdout)["plans"])
    fires = "SW010" in chk.stdout
    assert fires == plan_fits == (layers == 32), (chk.stdout, pln.stdout, pln.stderr)
    if fires:
        need = estimate(model(layers), gpu=H100, tp=1, seq_len=4096).memory_bytes / GIB
        assert f"at tp 1 a step needs {need:.1f} GiB of {H100.memory_gb:.1f} GiB" in chk.stdout
        assert "allocator allowance of 5% + 1 GiB included" in chk.stdout
