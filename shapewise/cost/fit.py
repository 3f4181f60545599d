"""Fitting the cost model's parameters to measured GEMM times (scipy least squares).

Used by ``scripts/fit_public.py`` (public measurements in ../shared/data) and by
``shapewise fit`` (a user's own ``shapewise bench`` output). The fit minimises the log of
predicted over measured time (a relative error, so 5 us and 5 ms kernels weigh alike) with
a soft-L1 loss that keeps a few odd measurements from dragging the rest.

The model is the same as :mod:`shapewise.cost.gemm`, evaluated over arrays with numpy; a
test checks that both agree to rounding on random shapes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shapewise.cost.defaults import calibration_of
from shapewise.cost.gemm import SPLIT_K_FACTORS
from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, GPU, Calibration, canonical_dtype

TENSOR_DTYPES = ("bf16", "fp16", "tf32", "fp8", "int8")
#: dtypes that run the same tensor-core kernels at a rate proportional to their peak, so one
#: fitted efficiency stands for the others (fp8/int8, fp32 and fp64 kernels differ)
SHARED_EFFICIENCY = ("bf16", "fp16", "tf32")
#: shared (dtype-independent) parameters and their bounds
SHARED_BOUNDS: dict[str, tuple[float, float]] = {
    "launch_us": (0.0, 60.0),
    "k_fill": (0.0, 2048.0),
    "bandwidth_efficiency": (0.2, 1.0),
    "tile_reuse_cost": (0.0, 2.0),
    "misalign_16b_factor": (0.2, 1.0),
    "misalign_coarse_factor": (0.5, 1.0),
    "overlap_penalty": (0.0, 1.0),
}
EFFICIENCY_BOUNDS = (0.02, 1.0)


@dataclass(frozen=True, slots=True)
class GemmObservation:
    """One measured GEMM: C[m,n] = A[m,k]·B[k,n], ``batch`` times, in ``time_s`` seconds."""

    dtype: str
    m: int
    n: int
    k: int
    batch: int
    time_s: float
    source: str = ""


def _arrays(obs: Sequence[GemmObservation]) -> dict[str, np.ndarray]:
    return {
        "m": np.array([o.m for o in obs], dtype=np.float64),
        "n": np.array([o.n for o in obs], dtype=np.float64),
        "k": np.array([o.k for o in obs], dtype=np.float64),
        "batch": np.array([o.batch for o in obs], dtype=np.float64),
        "time": np.array([o.time_s for o in obs], dtype=np.float64),
        "dtype": np.array([o.dtype for o in obs]),
    }


def predict_gemm_times(gpu: GPU, cal: Calibration, dtype: str, m: np.ndarray, n: np.ndarray,
                       k: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Vectorised twin of :func:`shapewise.cost.gemm.gemm_time` for one dtype."""
    peak = gpu.peak_flops(dtype)
    nb = DTYPE_BYTES[dtype]
    out_b = 4 if nb >= 4 else 2
    sm_rate = peak * cal.efficiency(dtype) / gpu.sm_count
    slots = gpu.sm_count * gpu.ctas_per_sm
    stream_bw = gpu.bandwidth * cal.bandwidth_efficiency
    a16 = max(1, 16 // nb)
    acoarse = gpu.alignment_elements(dtype)
    align = np.ones_like(m)
    for size in (n, k):
        mis16 = np.mod(size, a16) != 0
        misc = (~mis16) & (np.mod(size, acoarse) != 0)
        align = np.where(mis16, np.minimum(align, cal.misalign_16b_factor), align)
        align = np.where(misc, np.minimum(align, cal.misalign_coarse_factor), align)
    memory = batch * ((m * k + k * n) * nb + m * n * out_b) / stream_bw
    reuse_ref = min(128 / bm + 128 / bn for bm, bn in gpu.gemm_tiles)
    best = np.full_like(m, np.inf)
    for bm, bn in gpu.gemm_tiles:
        reuse = (1 + cal.tile_reuse_cost * reuse_ref) / (
            1 + cal.tile_reuse_cost * (128 / bm + 128 / bn))
        rate = sm_rate * reuse * align
        tiles_mn = np.ceil(m / bm) * np.ceil(n / bn) * batch
        for s in SPLIT_K_FACTORS:
            if s == 1:
                ok = np.ones_like(m, dtype=bool)
            else:
                ok = (tiles_mn < slots) & (np.floor(k / s) >= 128)
            ctas = tiles_mn * s
            waves = np.ceil(ctas / slots)
            compute = waves * 2.0 * bm * bn * (np.ceil(k / s) + cal.k_fill) / rate
            if s > 1:
                compute = compute + 2.0 * batch * m * n * 4 * s / stream_bw
            t = (np.maximum(compute, memory) + cal.overlap_penalty * np.minimum(compute, memory)
                 + cal.launch_us * 1e-6)
            best = np.where(ok, np.minimum(best, t), best)
    return best


def _predict_all(gpu: GPU, cal: Calibration, arr: Mapping[str, np.ndarray]) -> np.ndarray:
    out = np.empty_like(arr["time"])
    for dt in np.unique(arr["dtype"]):
        sel = arr["dtype"] == dt
        out[sel] = predict_gemm_times(gpu, cal, str(dt), arr["m"][sel], arr["n"][sel],
                                      arr["k"][sel], arr["batch"][sel])
    return out


def error_stats(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    """Median and p90 absolute % error, and the count."""
    if len(meas) == 0:
        return {"n": 0, "median_abs_pct": math.nan, "p90_abs_pct": math.nan}
    err = np.abs(pred / meas - 1.0) * 100.0
    return {"n": len(meas), "median_abs_pct": float(np.median(err)),
            "p90_abs_pct": float(np.percentile(err, 90))}


def regime_of(gpu: GPU, cal: Calibration, arr: Mapping[str, np.ndarray]) -> np.ndarray:
    """'small' (predicted under 20 us), else 'compute' or 'memory' by the roofline."""
    labels = np.empty(len(arr["time"]), dtype=object)
    for dt in np.unique(arr["dtype"]):
        sel = arr["dtype"] == dt
        m, n, k, b = arr["m"][sel], arr["n"][sel], arr["k"][sel], arr["batch"][sel]
        nb = DTYPE_BYTES[str(dt)]
        intensity = 2 * m * n * k / ((m * k + k * n + m * n) * nb)
        t = predict_gemm_times(gpu, cal, str(dt), m, n, k, b)
        lab = np.where(intensity >= gpu.ridge_point(str(dt)), "compute", "memory")
        lab = np.where(t < 20e-6, "small", lab)
        labels[sel] = lab
    return labels


@dataclass(frozen=True, slots=True)
class FitResult:
    calibration: Calibration
    in_sample: dict[str, Any]
    cross_validated: dict[str, Any]
    n_points: int
    fitted: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())


def _with(cal: Calibration, names: Sequence[str], values: Sequence[float]) -> Calibration:
    eff = dict(cal.gemm_efficiency)
    shared: dict[str, float] = {}
    for name, value in zip(names, values, strict=True):
        if name.startswith("eff:"):
            eff[name[4:]] = float(value)
        else:
            shared[name] = float(value)
    return dataclasses.replace(cal, gemm_efficiency=eff, **shared)


def _free_parameters(obs: Sequence[GemmObservation], gpu: GPU, fix: Iterable[str]
                     ) -> list[str]:
    names = [f"eff:{d}" for d in sorted({o.dtype for o in obs})]
    fixed = set(fix)
    for name in SHARED_BOUNDS:
        if name in fixed:
            continue
        misaligned_16b = sum((o.k % max(1, 16 // DTYPE_BYTES[o.dtype])) != 0
                             or (o.n % max(1, 16 // DTYPE_BYTES[o.dtype])) != 0 for o in obs)
        if name == "misalign_16b_factor" and misaligned_16b < 10:
            continue  # too few misaligned shapes to tell
        if name == "misalign_coarse_factor":
            a = {o.dtype: gpu.alignment_elements(o.dtype) for o in obs}
            if sum(o.k % a[o.dtype] != 0 or o.n % a[o.dtype] != 0 for o in obs) < 10:
                continue
        names.append(name)
    return names


def _solve(gpu: GPU, start: Calibration, obs: Sequence[GemmObservation], names: list[str],
           eff_bounds: tuple[float, float] = EFFICIENCY_BOUNDS) -> Calibration:
    from scipy.optimize import least_squares

    arr = _arrays(obs)
    lo = [eff_bounds[0] if n.startswith("eff:") else SHARED_BOUNDS[n][0] for n in names]
    hi = [eff_bounds[1] if n.startswith("eff:") else SHARED_BOUNDS[n][1] for n in names]
    x0 = []
    for name, a, b in zip(names, lo, hi, strict=True):
        v = start.efficiency(name[4:]) if name.startswith("eff:") else getattr(start, name)
        x0.append(min(max(v, a + 1e-6), b - 1e-6))
    log_meas = np.log(arr["time"])

    def residuals(x: np.ndarray) -> np.ndarray:
        cal = _with(start, names, x)
        return np.log(_predict_all(gpu, cal, arr)) - log_meas

    # The model is piecewise smooth (the best tile switches), so try a few starts.
    best = None
    for scale in (1.0, 0.8, 1.2):
        xs = np.clip(np.array(x0) * scale, np.array(lo) + 1e-6, np.array(hi) - 1e-6)
        res = least_squares(residuals, xs, bounds=(lo, hi), loss="soft_l1", f_scale=0.1,
                            diff_step=1e-3, max_nfev=400)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    return _with(start, names, best.x)


def fit_gemm(gpu: GPU, observations: Sequence[GemmObservation], *, fix: Iterable[str] = (),
             folds: int = 5, seed: int = 0, provenance: Mapping[str, Any] | None = None,
             min_points_shared: int = 60,
             efficiency_bounds: tuple[float, float] = EFFICIENCY_BOUNDS) -> FitResult:
    """Fit ``gpu``'s GEMM parameters to ``observations``; report in-sample and k-fold errors.

    ``fix`` names shared parameters to keep at their current value; with fewer than
    ``min_points_shared`` observations only the efficiencies are fitted. Efficiencies of dtypes
    that the GPU supports but the data lacks are filled from a fitted dtype of the same
    kind (tensor-core or not) when there is one, else kept at their default; the
    provenance says which is which.

    ``efficiency_bounds``: where each main-loop efficiency may go. A datasheet peak caps it
    at 1; a peak that is itself a measurement (a CPU's best GEMM rate) does not, so
    ``shapewise fit`` widens it there rather than leave the only free parameter pinned at
    its bound in every fold (which made the "cross-validated" errors equal the in-sample).
    """
    obs = [o for o in observations if o.time_s > 0 and math.isfinite(o.time_s)]
    if len(obs) < 8:
        raise InputError(f"measurements: {len(obs)} usable GEMM timings; a fit needs at least 8")
    for o in obs:
        canonical_dtype(o.dtype, field_name="measurements.dtype")
        gpu.peak_flops(o.dtype)
    start = calibration_of(gpu)
    names = _free_parameters(obs, gpu, fix)
    if len(obs) < min_points_shared:  # too few points to pin the shared terms down
        names = [n for n in names if n.startswith("eff:")]
    cal = _solve(gpu, start, obs, names, efficiency_bounds)
    arr = _arrays(obs)
    pred = _predict_all(gpu, cal, arr)
    regimes = regime_of(gpu, cal, arr)
    in_sample = {"all": error_stats(pred, arr["time"])}
    for r in ("compute", "memory", "small"):
        sel = regimes == r
        if sel.any():
            in_sample[r] = error_stats(pred[sel], arr["time"][sel])

    # k-fold cross-validation: refit on k-1 folds, predict the held-out fold
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(obs))
    cv_pred = np.empty(len(obs))
    k = max(2, min(folds, len(obs) // 4))
    for f in range(k):
        test = order[f::k]
        train_mask = np.ones(len(obs), dtype=bool)
        train_mask[test] = False
        train = [obs[i] for i in np.flatnonzero(train_mask)]
        cal_f = _solve(gpu, start, train, names, efficiency_bounds)
        sub = {key: v[test] for key, v in arr.items()}
        cv_pred[test] = _predict_all(gpu, cal_f, sub)
    cross = {"all": error_stats(cv_pred, arr["time"]), "folds": k}
    for r in ("compute", "memory", "small"):
        sel = regimes == r
        if sel.any():
            cross[r] = error_stats(cv_pred[sel], arr["time"][sel])

    # Fill efficiencies of dtypes the data lacks.
    fitted_dtypes = sorted({o.dtype for o in obs})
    eff = dict(cal.gemm_efficiency)
    origin = {d: "fitted" for d in fitted_dtypes}
    tensor_fit = [d for d in fitted_dtypes if d in SHARED_EFFICIENCY]
    for d in gpu.peak_tflops:
        if d in origin:
            continue
        same_kind = tensor_fit if d in SHARED_EFFICIENCY else []
        if same_kind:
            eff[d] = eff[same_kind[0]]
            origin[d] = f"copied from the {same_kind[0]} fit (no {d} data)"
        elif d in start.gemm_efficiency and start.status == "fitted":
            eff[d] = start.gemm_efficiency[d]
            origin[d] = dict(start.provenance.get("efficiency_origin", {})).get(
                d, "from the profile's earlier fit")
        else:
            eff[d] = calibration_of(dataclasses.replace(gpu, calibration=None)).efficiency(d)
            origin[d] = f"spec-derived default (no {d} data)"
    prov = dict(provenance or {})
    prov.update({
        "method": "scipy.optimize.least_squares on log(predicted/measured), soft-L1 loss",
        "fitted_parameters": [n.replace("eff:", "gemm_efficiency.") for n in names],
        "kept_at_default": [n for n in SHARED_BOUNDS if n not in names],
        "efficiency_origin": origin,
        "n_points": len(obs),
        "in_sample": in_sample,
        "cross_validated": cross,
    })
    eff = {d: v for d, v in eff.items() if d in gpu.peak_tflops}
    final = dataclasses.replace(cal, status="fitted", gemm_efficiency=eff, provenance=prov)
    return FitResult(final, in_sample, cross, len(obs), tuple(names))
