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
from functools import lru_cache
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


# --------------------------------------------------------------------------- attention


@dataclass(frozen=True, slots=True)
class AttentionObservation:
    """One measured fused-attention call (forward or backward) of one backend."""

    gpu: str
    """profile id"""
    backend: str
    dtype: str
    batch: int
    heads: int
    kv_heads: int
    seq_len: int
    seq_len_kv: int
    head_dim: int
    head_dim_v: int
    causal: bool
    window: int | None
    backward: bool
    time_s: float
    source: str = ""


def predict_attention(o: AttentionObservation, params: Mapping[str, float],
                      gpu: GPU | None = None) -> float:
    """Model time of ``o`` with the backend parameters ``params`` (no calibration lookup)."""
    from shapewise.cost.attention import (
        BACKENDS,
        _kernel_dim,
        fused_time,
        kernel_tiles,
        masked_block_skipping,
        params_from,
    )
    from shapewise.hardware.catalog import get_gpu

    g = get_gpu(o.gpu) if gpu is None else gpu
    be = BACKENDS[o.backend]
    p = params_from(dict(params), g, o.dtype, o.backward)
    kd, kdv = _kernel_dim(be, o.head_dim), _kernel_dim(be, o.head_dim_v)
    tiles = kernel_tiles(be, g, max(kd, kdv), o.backward)
    return fused_time(g, o.dtype, p, batch=o.batch, heads=o.heads, kv_heads=o.kv_heads,
                      seq_len=o.seq_len, seq_len_kv=o.seq_len_kv, head_dim_k=kd,
                      head_dim_vk=kdv, head_dim=o.head_dim, head_dim_v=o.head_dim_v,
                      causal=o.causal, window=o.window, tiles=tiles, backward=o.backward,
                      skip=masked_block_skipping(o.backend, g, o.dtype, o.backward))[0]


@dataclass(frozen=True, slots=True)
class AttentionFit:
    """Fitted parameters of one backend: per GPU (per chip, see :func:`attention_chip`) its
    efficiencies, shared κ and c₀."""

    backend: str
    per_gpu: dict[str, dict[str, float]]
    shared: dict[str, float]
    harness_us: dict[str, float]
    """fixed time per call of each (GPU, source file)'s timing harness: fitted so that it does
    not bias the kernel parameters, and not shipped (a profile keeps its kernel-timer launch)"""
    n_points: int
    cross_validated: dict[str, Any]
    observations: tuple[AttentionObservation, ...] = ()
    """the timings fitted (those of (chip, direction, dtype) with enough timings)"""
    cv_predictions: tuple[float, ...] = ()
    """held-out prediction of each of ``observations``, in order (nan: not predicted)"""


ATTENTION_SHARED_BOUNDS = {"softmax_exposed": (0.0, 4.0), "cta_overhead": (0.0, 16.0)}
#: κ₈, the fp8 backward's quantisation work per score element in exponential-equivalents
#: (16 per SM per clock): a few conversions, scalings and max-reductions per element
ATTENTION_QUANT_BOUNDS = (0.0, 16.0)
#: fewest timings of one (chip, direction, dtype) that fit its efficiency
ATTENTION_MIN_TIMINGS = 4
#: fixed time per call as the file's timer sees it, microseconds (a kernel timer: a few us;
#: timing around PyTorch's Python call adds the host-side dispatch)
ATTENTION_LAUNCH_BOUNDS = (0.0, 300.0)


def _harness(o: AttentionObservation) -> str:
    return f"{o.gpu}|{o.source}"


@lru_cache(maxsize=256)
def attention_chip(gpu_id: str) -> str:
    """Profiles that share one chip as the kernels see it share their attention parameters.

    Same SM architecture, SM count, clock and dense peak (H100 SXM, H200 and GH200): an
    efficiency as a fraction of peak is a property of the kernel on that SM, so their
    timings are fitted together. The key names the chip by its first profile id.
    """
    from shapewise.hardware.catalog import get_gpu, list_gpus

    def sig(g: GPU) -> tuple:
        return (g.vendor, g.arch_code, g.sm_count, g.boost_clock_mhz,
                tuple(sorted(g.peak_tflops.items())))

    try:
        me = sig(get_gpu(gpu_id))
    except InputError:  # a profile outside the catalog (a measured one): its own chip
        return gpu_id
    return min(g.id for g in list_gpus() if sig(g) == me)


def _chip(o: AttentionObservation) -> str:
    return attention_chip(o.gpu)


def _attention_names(obs: Sequence[AttentionObservation], fit_shared: bool) -> list[str]:
    """Free parameters: per GPU the efficiencies (16-bit, fp8; forward, backward) and, where
    head dims vary enough, κ, and κ₈ (``bwd_quant_fp8``) in place of the fp8 backward's
    efficiency; per (GPU, source file) the harness's fixed time per call; per backend κ
    and c₀ (``fit_shared``)."""
    names = []
    for key in sorted({_harness(o) for o in obs}):
        if sum(_harness(o) == key for o in obs) >= 10:  # enough rows to see a fixed cost
            names.append(f"harness:{key}")
    for gid in sorted({_chip(o) for o in obs}):
        rows = [o for o in obs if _chip(o) == gid]
        if len(rows) >= 40 and len({o.head_dim for o in rows}) >= 3:
            # the exponentials' exposed share differs by SM generation (Blackwell's tensor
            # cores doubled, its special-function unit did not): per GPU where head dims vary
            names.append(f"{gid}:softmax_exposed")
        # the fp8 backward's quantisation work per score element (κ₈) costs the same at
        # every head dim and its MMAs do not: fitted where the fp8 backward timings span
        # head dims. Its MMAs then run at the 16-bit backward's share of their (doubled)
        # peak, as the kernel is the same: the timings bound that share only from below
        # (the quantisation is the longer at every head dim measured), so it is not fitted
        quant = len({o.head_dim for o in rows if o.backward and o.dtype == "fp8"}) >= 2
        for bw in (False, True):
            for fp8 in (False, True):
                if bw and fp8 and quant:
                    names.append(f"{gid}:bwd_quant_fp8")
                elif any(o.backward == bw and (o.dtype == "fp8") == fp8 for o in rows):
                    names.append(f"{gid}:{'bwd' if bw else 'fwd'}_efficiency"
                                 + ("_fp8" if fp8 else ""))
    if fit_shared:
        # κ trades against the efficiency unless head dims vary (the exponentials cost the
        # same per pair at every head dim, the MMAs do not): fixed where they do not
        if len({o.head_dim for o in obs}) >= 3:
            names.append("softmax_exposed")
        names.append("cta_overhead")
    return names


def _attention_params(names: Sequence[str], x: Sequence[float], shared0: Mapping[str, float]
                      ) -> tuple[dict[str, dict[str, float]], dict[str, float],
                                 dict[str, float]]:
    """(per-GPU parameters, backend-wide parameters, per-harness fixed time in us)."""
    per: dict[str, dict[str, float]] = {}
    harness: dict[str, float] = {}
    shared = dict(shared0)
    for n, v in zip(names, x, strict=True):
        if n.startswith("harness:"):
            harness[n[len("harness:"):]] = float(v)
        elif ":" in n:
            gid, key = n.split(":")
            per.setdefault(gid, {})[key] = float(v)
        else:
            shared[n] = float(v)
    return per, shared, harness


def attention_obs_params(o: AttentionObservation, per: Mapping[str, Mapping[str, float]],
                         shared: Mapping[str, float], harness: Mapping[str, float]
                         ) -> dict[str, float]:
    """The parameters :func:`predict_attention` needs for ``o`` from a fit's parts.

    A direction or dtype the fit has no value for (it had no such rows) is the other fitted
    value of that GPU: only reached in cross-validation, when a fold holds all such rows.
    """
    prm = {**shared, **per[_chip(o)]}
    for d in ("fwd", "bwd"):
        other = "bwd" if d == "fwd" else "fwd"
        if f"{d}_efficiency" not in prm:
            prm[f"{d}_efficiency"] = prm.get(f"{d}_efficiency_fp8",
                                             prm.get(f"{other}_efficiency", 0.5))
    if _harness(o) in harness:
        prm["launch_us"] = harness[_harness(o)]
    return prm


def _attention_solve(obs: Sequence[AttentionObservation], names: list[str],
                     shared0: Mapping[str, float], gpus: Mapping[str, GPU]) -> np.ndarray:
    from scipy.optimize import least_squares
    log_meas = np.log([o.time_s for o in obs])
    def bounds(n: str) -> tuple[float, float]:
        if ":" not in n:
            return ATTENTION_SHARED_BOUNDS[n]
        if n.startswith("harness:"):
            return ATTENTION_LAUNCH_BOUNDS
        if n.endswith("softmax_exposed"):
            return ATTENTION_SHARED_BOUNDS["softmax_exposed"]
        if n.endswith("bwd_quant_fp8"):
            return ATTENTION_QUANT_BOUNDS
        return EFFICIENCY_BOUNDS

    lo = [bounds(n)[0] for n in names]
    hi = [bounds(n)[1] for n in names]
    x0 = np.array([shared0.get(n, 0.5) if ":" not in n
                   else 5.0 if n.startswith("harness:") else 0.5 for n in names])
    x0 = np.clip(x0, np.array(lo) + 1e-6, np.array(hi) - 1e-6)

    def residuals(x: np.ndarray) -> np.ndarray:
        per, shared, harness = _attention_params(names, x, shared0)
        pred = [predict_attention(o, attention_obs_params(o, per, shared, harness), gpus[o.gpu])
                for o in obs]
        return np.log(pred) - log_meas

    best = None
    for start in (0.5, 0.3, 0.8):  # the loss is not convex in the efficiencies: a few starts
        xs = np.where([":" in n and not n.startswith("harness:") and "efficiency" in n
                       for n in names], start, x0)
        xs = np.clip(xs, np.array(lo) + 1e-6, np.array(hi) - 1e-6)
        res = least_squares(residuals, xs, bounds=(lo, hi), loss="soft_l1", f_scale=0.1,
                            diff_step=1e-3, max_nfev=200)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    return best.x


def fit_attention(backend: str, observations: Sequence[AttentionObservation], *,
                  shared: Mapping[str, float], fit_shared: bool = True, folds: int = 5,
                  seed: int = 0, gpus: Mapping[str, GPU] | None = None) -> AttentionFit:
    """Fit ``backend``'s per-GPU efficiencies (and, with ``fit_shared``, its κ and c₀).

    Least squares on log(predicted/measured) with a soft-L1 loss, as the GEMM fit; k-fold
    cross-validation refits on the other folds and predicts each held-out point.
    """
    obs = [o for o in observations if o.backend == backend and o.time_s > 0
           and math.isfinite(o.time_s)]
    # an efficiency is fitted only from enough timings of its (chip, direction, dtype):
    # one or two timings (a number quoted in an issue thread) test the prior instead
    count: dict[tuple, int] = {}
    for o in obs:
        key = (_chip(o), o.backward, o.dtype == "fp8")
        count[key] = count.get(key, 0) + 1
    obs = [o for o in obs if count[(_chip(o), o.backward, o.dtype == "fp8")]
           >= ATTENTION_MIN_TIMINGS]
    if len(obs) < 2:
        raise InputError(f"measurements: {len(obs)} usable {backend} timings; a fit needs 2")
    fit_shared = fit_shared and len(obs) >= 20
    from shapewise.hardware.catalog import get_gpu

    # the profiles the observations name (``gpus`` for one outside the catalog)
    gpus = {gid: (gpus or {}).get(gid) or get_gpu(gid) for gid in {o.gpu for o in obs}}
    names = _attention_names(obs, fit_shared)
    x = _attention_solve(obs, names, shared, gpus)
    per_chip, sh, harness = _attention_params(names, x, shared)
    per = {o.gpu: per_chip[_chip(o)] for o in obs}  # every profile of a chip gets its fit
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(obs))
    k = max(2, min(folds, len(obs) // 4)) if len(obs) >= 8 and folds else 0
    cv_pred = np.full(len(obs), np.nan)
    for f in range(k):
        test = set(order[f::k].tolist())
        train = [o for i, o in enumerate(obs) if i not in test]
        tn = _attention_names(train, fit_shared)
        per_f, sh_f, h_f = _attention_params(tn, _attention_solve(train, tn, shared, gpus),
                                             shared)
        for i in test:
            o = obs[i]
            if _chip(o) in per_f:
                cv_pred[i] = predict_attention(o, attention_obs_params(o, per_f, sh_f, h_f),
                                               gpus[o.gpu])
    meas = np.array([o.time_s for o in obs])
    ok = np.isfinite(cv_pred)
    cross = {"all": error_stats(cv_pred[ok], meas[ok]), "folds": k}
    return AttentionFit(backend, per, sh, harness, len(obs), cross, tuple(obs),
                        tuple(float(v) for v in cv_pred))
