"""``shapewise check`` with a plan: the plan-aware rules (#10 item 7) through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shapewise", "check", "llama-2-7b",
                           "--gpu", "h100", "--seq-len", "4096", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(("args", "rule"), [
    # 32 layers over pp·v = 4·3 chunks
    (["--gpus", "64", "--pp", "4", "--virtual-stages", "3", "--global-batch", "64"], "SW016"),
    # one micro-batch per step for 8 stages
    (["--gpus", "64", "--pp", "8", "--global-batch", "8"], "SW017"),
    # 4 stages, 4 micro-batches: the bubble is a large share of the step
    (["--gpus", "64", "--pp", "4", "--global-batch", "64"], "SW018"),
    # plain data parallelism of a 7B model: Adam's states alone pass 80 GB
    (["--gpus", "8", "--global-batch", "8"], "SW019"),
])
def test_plan_flags_reach_the_plan_rules(args: list[str], rule: str, tmp_path: Path) -> None:
    r = check(*args, "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    found = [f["rule_id"] for f in json.loads(r.stdout)["reports"][0]["findings"]]
    assert rule in found, found


def test_a_plan_that_fits_and_fills_its_pipeline_has_no_plan_finding(tmp_path: Path) -> None:
    r = check("--gpus", "64", "--fsdp", "full", "--micro-batch", "2", "--global-batch",
              "1024", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["reports"][0]["findings"] == []


def test_a_bad_plan_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = check("--gpus", "63", "--tp", "2", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: --gpus:" in lines[0], r.stderr
