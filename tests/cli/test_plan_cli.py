"""``shapewise plan`` and estimate's plan flags, through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shapewise", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_plan_lists_the_columns_of_the_issue(tmp_path: Path) -> None:
    r = run("plan", "llama-2-7b", "--gpu", "h100", "--gpus", "16", "--global-batch", "256",
            "--seq-len", "4096", "--top", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for col in ("plan", "tokens/s/GPU", "MFU", "memory/GPU", "bubble %", "exposed comm %"):
        assert col in r.stdout
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("dp")]) == 3


def test_plan_json_ranks_feasible_plans(tmp_path: Path) -> None:
    r = run("plan", "gpt2", "--gpu", "a100", "--gpus", "8", "--global-batch", "64",
            "--seq-len", "1024", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    rates = [p["tokens_per_s"] for p in data["plans"]]
    assert rates == sorted(rates, reverse=True) and rates
    for p in data["plans"]:
        assert p["plan"]["n_gpus"] == 8
        assert p["memory_bytes"] <= 80 * 2**30
        assert sum(p["categories"].values()) == pytest.approx(p["step_time_s"])


def test_estimate_takes_a_whole_plan(tmp_path: Path) -> None:
    r = run("estimate", "llama-2-7b", "--gpu", "h100", "--seq-len", "4096", "--gpus", "64",
            "--tp", "2", "--pp", "2", "--sequence-parallel", "--zero", "1",
            "--recompute", "selective", "--global-batch", "512", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["plan"]["dp"] == 16 and data["plan"]["grad_accum"] == 32
    assert data["plan"]["recompute"] == "selective" and data["fits"]
    r = run("estimate", "llama-2-7b", "--gpu", "h100", "--seq-len", "4096", "--recompute",
            cwd=tmp_path)  # a bare --recompute is full recompute, as before
    assert r.returncode == 0 and "rc=full" in r.stdout


@pytest.mark.parametrize(("args", "field"), [
    (["estimate", "llama-2-7b", "--gpu", "h100", "--gpus", "8", "--dp", "2", "--tp", "2"],
     "--gpus"),
    (["estimate", "llama-2-7b", "--gpu", "h100", "--tp", "3"], "tp"),
    (["estimate", "llama-2-7b", "--gpu", "h100", "--pp", "64"], "pp"),
    (["estimate", "llama-2-7b", "--gpu", "h100", "--dp", "4", "--micro-batch", "3",
      "--global-batch", "100"], "global_batch"),
    # gpt2: 12 layers and an odd vocabulary leave dp ≥ 8 on 64 GPUs: 7 never divides
    (["plan", "gpt2", "--gpu", "h100", "--gpus", "64", "--global-batch", "7"],
     "global_batch"),
    (["plan", "gpt2", "--gpu", "a100", "--gpus", "8", "--global-batch", "64",
      "--attention-backend", "nope"], "attention_backend"),
])
def test_bad_plans_are_one_line_and_exit_2(args: list[str], field: str,
                                           tmp_path: Path) -> None:
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"error: {field}:" in lines[0], r.stderr


def test_report_shows_the_sustained_clock_and_its_source(tmp_path: Path) -> None:
    r = run("report", "--gpu", "h100", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "In a long training run: 80% of these math rates" in r.stdout
    assert "validate_steps.py" in r.stdout
    data = json.loads(run("report", "--gpu", "a100", "--json", cwd=tmp_path).stdout)
    assert data["sustained_clock"] == pytest.approx(0.898)
    assert "llmfoundry" in data["sustained_clock_source"]
