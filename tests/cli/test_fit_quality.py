"""`shapewise fit` knows when its fit is bad, and a CPU profile works as it is (#15 items 3, 4).

Bench files are built here (a real CPU bench takes a minute and measures the machine's
load, not the code): GEMM times of a known rate with a seeded log-normal scatter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shapewise.bench.fit import MAX_DROPPED_SHARE, MAX_MEDIAN_ERROR_PCT, fit_profile

SHAPES = [(m, n, k) for m in (256, 512, 1024, 2048) for n in (256, 768, 2048)
          for k in (256, 1024, 4096)]  # 36: under 60, so only the efficiency is fitted


def cpu_doc(*, noise: float = 0.08, seed: int = 0, contended: float = 0.0,
            spread: float = 0.01, memory_gb: float | None = 25.3,
            overhead_s: float = 5e-6) -> dict:
    """A CPU bench document: 0.2 TFLOP/s plus ``overhead_s`` per call, times scattered by
    ``noise``; the first ``contended`` share of the timings taken under contention."""
    rng = np.random.default_rng(seed)
    records = []
    for i, (m, n, k) in enumerate(SHAPES):
        t = (2.0 * m * n * k / 0.2e12 + overhead_s) * float(np.exp(rng.normal(0.0, noise)))
        records.append({
            "key": f"gemm:m={m},n={n},k={k},b=1,dtype=fp32", "kind": "gemm", "backend": "blas",
            "dtype": "fp32", "m": m, "n": n, "k": k, "batch": 1, "median_s": t,
            "spread_s": spread * t, "status": "ok",
            "cpu_contention": 0.9 if i < contended * len(SHAPES) else 0.0})
    cpu = {"model": "Test CPU", "usable_cpus": 2, "load_average_1_5_15min": [0.1, 0.1, 0.1]}
    if memory_gb is not None:
        cpu["memory_gb"] = memory_gb
    return {"format": "shapewise-bench/1",
            "provenance": {"device": "cpu", "device_name": "cpu", "device_type": "cpu",
                           "hostname": "the-measured-host", "threads": 2,
                           "memory_bandwidth_gbs": 100.0, "cpu": cpu},
            "run": {"device": "cpu", "dtype": "fp32", "mode": "quick"},
            "measurements": records}


def write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def sw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shapewise", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, check=False)


def test_cross_validation_holds_out(tmp_path: Path) -> None:
    """The held-out rows used to equal the in-sample ones: the CPU profile's peak is the best
    rate measured, so the one free parameter (efficiency) sat at its bound of 1 in every
    fold and no fold learned anything from its own points. A CPU BLAS that runs every GEMM
    near its best rate (as MKL does) shows it: the model's fill and launch terms make each
    prediction at efficiency 1 slower than measured."""
    doc = cpu_doc(noise=0.01, overhead_s=0.0)
    bench = write(tmp_path / "cpu.json", doc)
    report = fit_profile(bench, out=tmp_path / "p.json")
    assert report.gemm.fitted == ("eff:fp32",)
    ins, cv = report.gemm.in_sample["all"], report.gemm.cross_validated["all"]
    assert ins["n"] == cv["n"] == len(SHAPES)
    assert cv["median_abs_pct"] != pytest.approx(ins["median_abs_pct"], rel=1e-6)
    assert cv["p90_abs_pct"] != pytest.approx(ins["p90_abs_pct"], rel=1e-6)
    # the efficiency is free; above 1 it is folded into the (measured) peak
    cal = report.profile.calibration
    assert cal.gemm_efficiency["fp32"] <= 1.0
    best = max(2 * m * n * k / r["median_s"] for (m, n, k), r
               in zip(SHAPES, doc["measurements"], strict=True)) / 1e12
    assert report.profile.peak_tflops["fp32"] > best  # the fitted main loop outruns it
    assert "cpu_peak" in cal.provenance


def test_a_good_fit_is_quiet_and_written(tmp_path: Path) -> None:
    write(tmp_path / "cpu.json", cpu_doc())
    r = sw("fit", "cpu.json", "--out", "p.json", "--strict", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stdout and (tmp_path / "p.json").exists()
    q = json.loads((tmp_path / "p.json").read_text())["calibration"]["provenance"]["quality"]
    assert q["ok"] and q["cv_median_abs_pct"] < MAX_MEDIAN_ERROR_PCT


def test_a_bad_fit_warns_and_strict_refuses_it(tmp_path: Path) -> None:
    # most timings under contention (dropped) and the rest badly scattered
    write(tmp_path / "cpu.json", cpu_doc(noise=0.9, contended=0.6, seed=3))
    r = sw("fit", "cpu.json", "--out", "p.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning: cross-validated median error" in r.stdout
    assert f"more than {MAX_DROPPED_SHARE:.0%}" in r.stdout and "were left out" in r.stdout
    assert "the profile was written" in r.stdout and (tmp_path / "p.json").exists()

    r = sw("fit", "cpu.json", "--out", "strict.json", "--strict", cwd=tmp_path)
    assert r.returncode == 1
    assert "NOT written" in r.stdout and not (tmp_path / "strict.json").exists()

    r = sw("fit", "cpu.json", "--out", "j.json", "--strict", "--json", cwd=tmp_path)
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["written"] is False and not data["quality"]["ok"]
    assert data["quality"]["dropped"] == round(0.6 * len(SHAPES) + 0.5)
    assert "shapewise fit: warning:" in r.stderr


def test_it_says_when_the_machine_looked_busy(tmp_path: Path) -> None:
    write(tmp_path / "quiet.json", cpu_doc())
    r = sw("fit", "quiet.json", "--out", "q.json", cwd=tmp_path)
    assert "busy" not in r.stdout
    write(tmp_path / "noisy.json", cpu_doc(spread=0.5))  # IQR half the median
    r = sw("fit", "noisy.json", "--out", "n.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "the machine looked busy while measuring" in r.stdout
    assert f"{len(SHAPES)} of {len(SHAPES)} GEMM timings spread over 25%" in r.stdout


def test_a_cpu_profile_works_without_dtype_and_records_real_memory(tmp_path: Path) -> None:
    write(tmp_path / "cpu.json", cpu_doc(memory_gb=25.3))
    assert sw("fit", "cpu.json", "--out", "cpu-prof.json", cwd=tmp_path).returncode == 0
    prof = json.loads((tmp_path / "cpu-prof.json").read_text())
    assert prof["memory_gb"] == 25.3 and "cpu.memory_gb" in prof["references"]["memory"]
    r = sw("report", "--profile", "cpu-prof.json", "--n-step", "512", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dtype"] == "fp32"  # the profile's own dtype
    r = sw("recommend", "--params", "125M", "--profile", "cpu-prof.json", "--n-trials", "5",
           cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "fp32" in r.stdout.splitlines()[0]
    r = sw("estimate", "gpt2", "--profile", "cpu-prof.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "exceeds" not in r.stdout  # 1 GB of placeholder memory made every model "exceed"
    r = sw("check", str(Path(__file__).parents[1] / "fixtures/hf/gpt2/config.json"),
           "--profile", "cpu-prof.json", "--json", cwd=tmp_path)
    assert r.returncode in (0, 1) and json.loads(r.stdout)["reports"][0]["dtype"] == "fp32"


def test_an_old_bench_file_without_memory_says_where_the_figure_came_from(
        tmp_path: Path) -> None:
    bench = write(tmp_path / "old.json", cpu_doc(memory_gb=None))
    prof = fit_profile(bench).profile
    assert prof.memory_gb > 1.0  # this machine's, never a 1 GB placeholder
    assert "ASSUMED" in prof.references["memory"]  # made on another host: said so


def test_help_states_the_thresholds_the_code_uses(tmp_path: Path) -> None:
    from shapewise.bench.fit import MAX_P90_ERROR_PCT

    text = " ".join(sw("fit", "--help", cwd=tmp_path).stdout.split())
    assert f"median error passes {MAX_MEDIAN_ERROR_PCT:g}%, its p90 {MAX_P90_ERROR_PCT:g}%" \
        in text
    assert f"more than {MAX_DROPPED_SHARE:.0%} of the timings were left out" in text
