"""The calibration fit recovers known parameters and reports held-out errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import shapewise as sw
from shapewise.cost.defaults import default_calibration
from shapewise.cost.fit import GemmObservation, fit_gemm, predict_gemm_times
from shapewise.errors import InputError


def _synthetic(truth, n: int = 300, noise: float = 0.03, seed: int = 1):
    g = sw.get_gpu("a100").with_calibration(truth)
    rng = np.random.default_rng(seed)
    m = rng.integers(16, 8192, n).astype(float)
    nn = rng.integers(16, 8192, n).astype(float)
    k = rng.integers(16, 8192, n).astype(float)
    b = np.ones(n)
    t = predict_gemm_times(g, truth, "bf16", m, nn, k, b) * np.exp(rng.normal(0, noise, n))
    return [GemmObservation("bf16", int(a), int(c), int(d), 1, float(x))
            for a, c, d, x in zip(m, nn, k, t, strict=True)]


def test_fit_recovers_efficiency_and_launch() -> None:
    base = default_calibration(sw.get_gpu("a100"))
    truth = dataclasses.replace(base, gemm_efficiency={"bf16": 0.62}, launch_us=7.5)
    obs = _synthetic(truth)
    start = dataclasses.replace(sw.get_gpu("a100"), calibration=None)
    # efficiency and launch alone are identifiable: they must come back
    fixed = ("k_fill", "bandwidth_efficiency", "tile_reuse_cost", "misalign_16b_factor",
             "misalign_coarse_factor")
    res = fit_gemm(start, obs, folds=3, fix=fixed)
    assert res.calibration.gemm_efficiency["bf16"] == pytest.approx(0.62, rel=0.03)
    assert res.calibration.launch_us == pytest.approx(7.5, rel=0.1)
    assert res.cross_validated["all"]["median_abs_pct"] < 5.0
    # with every shared term free, efficiency trades against tile reuse and fill, but the
    # predictions on held-out points still match the truth
    res = fit_gemm(start, obs, folds=3)
    assert res.cross_validated["all"]["median_abs_pct"] < 5.0
    assert res.calibration.status == "fitted"
    assert res.calibration.provenance["efficiency_origin"]["bf16"] == "fitted"
    # tf32 shares the tensor-core fit; fp64 does not
    assert res.calibration.gemm_efficiency["tf32"] == res.calibration.gemm_efficiency["bf16"]
    assert "default" in res.calibration.provenance["efficiency_origin"]["fp64"]


def test_fit_refuses_too_little_data() -> None:
    with pytest.raises(InputError, match="at least 8"):
        fit_gemm(sw.get_gpu("a100"), [GemmObservation("bf16", 64, 64, 64, 1, 1e-5)] * 3)


def test_shipped_calibrations_carry_provenance_and_no_data() -> None:
    for g in sw.list_gpus():
        cal = g.calibration
        if cal is None:
            continue
        prov = cal.provenance
        if cal.status == "default":  # GEMM defaults, holding attention fits only
            assert cal.attention_backends
            assert prov["attention"]["script"] == "scripts/fit_public.py"
            for backend, info in prov["attention"]["backends"].items():
                assert backend in cal.attention_backends and info["rows_used"] > 0
                assert all("xla_matmul" not in f for f in info["fitted_on"])
            continue
        assert cal.status == "fitted"
        assert prov["script"] == "scripts/fit_public.py"
        for name, info in prov["fitted_on"].items():
            assert name != "xla_matmul_perf_table.csv", "the validation file is never fitted"
            assert info["source"] and info["rows_used"] > 0
