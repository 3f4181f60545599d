#!/usr/bin/env python3
"""Fit the GEMM cost model of every catalog GPU that has public calibration data.

    python scripts/fit_public.py [--data ../shared/data] [--write] [--max-per-source 1500]

Reads only the calibration files (scripts/public_data.py); never the validation file. With
``--write`` the fitted parameters and their provenance go into profiles/<id>.json's
``calibration`` block; the data itself is never copied into the repository.

Two stages per GPU: first the shared terms (launch, pipeline fill, bandwidth, tile reuse,
alignment) and the efficiency of the tensor-core dtypes on the tensor-core data (the kernels
these terms describe); then the efficiency of the other dtypes (plain FP32) with the shared
terms held. A GPU whose only data is plain FP32 gets that efficiency fitted and keeps the
spec-derived defaults for everything else (SIMT kernels timed with host events say little
about tensor-core kernels' launch, fill and reuse).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import public_data

from shapewise import __version__
from shapewise.cost.defaults import default_calibration
from shapewise.cost.fit import (
    SHARED_BOUNDS,
    TENSOR_DTYPES,
    AttentionFit,
    error_stats,
    fit_attention,
    fit_gemm,
)
from shapewise.hardware.catalog import calibration_to_dict, get_gpu

REPO = Path(__file__).resolve().parents[1]

#: Terms a file's timing method cannot pin down. TunableOp reports the mean host-visible
#: time per call (launch gaps included; data README §6), not a kernel timer's duration, so
#: the fixed per-launch term keeps its kernel-timer default when only such data exist.
METHOD_FIXED = {"tunableop_mi300x_fp16_gemm.csv": ("launch_us",),
                "aiter_tuned_gemm_gfx942_bf16.csv": ("launch_us",)}


def _subsample(obs: list, limit: int, seed: int) -> list:
    """At most ``limit`` observations per source file, chosen with a fixed seed."""
    by_src: dict[str, list] = defaultdict(list)
    for o in obs:
        by_src[o.source].append(o)
    rng = np.random.default_rng(seed)
    out = []
    for src in sorted(by_src):
        rows = by_src[src]
        if len(rows) > limit:
            idx = np.sort(rng.choice(len(rows), size=limit, replace=False))
            rows = [rows[i] for i in idx]
        out.extend(rows)
    return out


def fit_one(gid: str, obs: list, *, seed: int, date: str) -> dict:
    gpu = get_gpu(gid)
    # start from spec-derived defaults, not from an earlier fit
    gpu = gpu.with_calibration(None)  # type: ignore[arg-type]
    tensor = [o for o in obs if o.dtype in TENSOR_DTYPES]
    other = [o for o in obs if o.dtype not in TENSOR_DTYPES]
    files = sorted({o.source for o in obs})
    base_prov = {
        "fitted_on": {f: {"rows_used": sum(o.source == f for o in obs),
                          "source": public_data.SOURCE_COMMITS[f]} for f in files},
        "data": "public measurements, ../shared/data (see its README); not shipped",
        "script": "scripts/fit_public.py",
        "shapewise_version": __version__,
        "date": date,
        "seed": seed,
    }
    stages = []
    if tensor:
        srcs = {o.source for o in tensor}
        fixed = set.intersection(*(set(METHOD_FIXED.get(f, ())) for f in srcs))
        if fixed:
            base_prov["held_for_method"] = {p: "timing method cannot separate it (see "
                                            "scripts/fit_public.py METHOD_FIXED)" for p in fixed}
        r1 = fit_gemm(gpu, tensor, fix=fixed, seed=seed, provenance=base_prov)
        stages.append(("tensor-core", r1))
        gpu = gpu.with_calibration(r1.calibration)
    if other:
        # Shared terms describe the tensor-core kernels the estimates price; plain-FP32 data
        # (SIMT kernels, often event-timed with the host launch inside) only sets the FP32
        # efficiency, never the shared terms.
        fix = list(SHARED_BOUNDS)
        r2 = fit_gemm(gpu, other, fix=fix, seed=seed, provenance=base_prov)
        stages.append(("plain", r2))
        gpu = gpu.with_calibration(r2.calibration)
    cal = gpu.calibration
    assert cal is not None
    prov = dict(cal.provenance)
    merged = sorted(f for f in files if f in public_data.AS_16BIT)
    if merged:
        origin = dict(prov.get("efficiency_origin", {}))
        for d in ("fp16", "bf16"):
            origin[d] = (f"fitted: one 16-bit efficiency over the fp16 rows and the bf16 rows "
                         f"of {', '.join(merged)} (same matrix-core rate)")
        prov["efficiency_origin"] = origin
    prov["stages"] = {name: {"n_points": r.n_points,
                             "fitted_parameters": list(r.fitted),
                             "in_sample": r.in_sample,
                             "cross_validated": r.cross_validated} for name, r in stages}
    for key in ("in_sample", "cross_validated", "n_points", "fitted_parameters",
                "kept_at_default"):
        prov.pop(key, None)
    fitted_shared = sorted({p for _, r in stages for p in r.fitted if not p.startswith("eff:")})
    prov["shared_parameters_fitted"] = fitted_shared
    prov["shared_parameters_default"] = [p for p in SHARED_BOUNDS if p not in fitted_shared]
    out = calibration_to_dict(cal)
    out["provenance"] = prov
    return out


def _print_cross_gpu_means() -> None:
    """Means of the shared terms over the GPUs whose tensor-core kernels were fitted.

    shapewise/cost/defaults.py takes its launch, fill and bandwidth defaults from here.
    """
    rows = []
    for path in sorted((REPO / "profiles").glob("*.json")):
        cal = json.loads(path.read_text()).get("calibration")
        if cal and "tensor-core" in cal.get("provenance", {}).get("stages", {}):
            rows.append((path.stem, cal))
    if not rows:
        return
    print("cross-GPU means over tensor-core fits (" + ", ".join(r[0] for r in rows) + "):")
    for key in ("launch_us", "k_fill", "bandwidth_efficiency", "tile_reuse_cost",
                "overlap_penalty"):
        # only values this GPU's data set (not ones held at the default for its method)
        vals = [c[key] for _, c in rows
                if key in c["provenance"].get("shared_parameters_fitted", [])]
        print(f"    {key}: mean {np.mean(vals):.3f}, median {np.median(vals):.3f}")
    for vendor, ids in (("nvidia", ("a100", "h100", "v100")), ("amd", ("mi",))):
        effs = [max(c["gemm_efficiency"].get(d, 0) for d in ("bf16", "fp16"))
                for gid, c in rows if gid.startswith(ids)]
        if effs:
            print(f"    {vendor} tensor efficiency: mean {np.mean(effs):.3f} over {len(effs)}")


#: backends fitted on the public attention timings. sdpa-math has no parameters of its own:
#: it is priced by the GEMM model as PyTorch's source runs it (fp32 products and passes over
#: the scores). Its B200 backward rows are not fitted nor counted against the target: they
#: run faster than the fp32 peak allows for the products the source runs (validate_public.py,
#: EXCLUDED_ATTENTION_GROUPS, gives the figures)
ATTENTION_FIT_BACKENDS = ("cudnn", "sdpa-flash", "fa2", "fa4", "triton", "ck")
#: where the shared terms start (and stay, for backends with too few timings to fit them);
#: fixed here, not read from defaults.py, so that a refit does not chase its own output
ATTENTION_START = {"softmax_exposed": 0.5, "cta_overhead": 1.0}


def fit_attention_public(folder: Path, *, write: bool, seed: int, date: str,
                         only: list[str] | None = None) -> dict[str, AttentionFit]:
    """Fit every backend with public timings; write per-GPU parameters into the profiles."""
    obs = list(public_data.read_attention(folder))
    fits: dict[str, AttentionFit] = {}
    for backend in ATTENTION_FIT_BACKENDS:
        rows = [o for o in obs if o.backend == backend]
        try:
            f = fit_attention(backend, rows, shared=ATTENTION_START, seed=seed)
        except ValueError as err:  # too few timings: the priors stand, validated as such
            print(f"attention {backend}: {len(rows)} timings; not fitted ({err})")
            continue
        fits[backend] = f
        cv = f.cross_validated["all"]
        print(f"attention {backend}: {f.n_points} timings; shared "
              + ", ".join(f"{k} {v:.3g}" for k, v in f.shared.items())
              + (f"; CV median {cv['median_abs_pct']:.1f}% p90 {cv['p90_abs_pct']:.1f}%"
                 if cv["n"] else "; too few timings to cross-validate"))
        for gid, prm in sorted(f.per_gpu.items()):
            print(f"    {gid}: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(prm.items())))
    _print_legacy_rates(fits)
    if not write:
        return fits
    by_gpu: dict[str, dict[str, dict]] = defaultdict(dict)
    for backend, f in fits.items():
        for gid, prm in f.per_gpu.items():
            by_gpu[gid][backend] = {**f.shared, **prm}
    for path in sorted((REPO / "profiles").glob("*.json")):  # fits no longer made go away
        doc = json.loads(path.read_text())
        cal = doc.get("calibration") or {}
        if path.stem not in by_gpu and cal.get("attention_backends") and (
                not only or path.stem in only):
            cal.pop("attention_backends")
            cal.get("provenance", {}).pop("attention", None)
            if cal.get("status") == "default":  # the block only held attention fits
                doc.pop("calibration")
            path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    for gid, backends in sorted(by_gpu.items()):
        if only and gid not in only:
            continue
        path = REPO / "profiles" / f"{gid}.json"
        doc = json.loads(path.read_text())
        cal = doc.get("calibration")
        if cal is None:  # no GEMM fit: the GEMM terms stay the live defaults (status default)
            cal = calibration_to_dict(default_calibration(get_gpu(gid).with_calibration(None)))  # type: ignore[arg-type]
            cal["provenance"] = {"source": "GEMM terms: spec-derived defaults (see "
                                 "shapewise/cost/defaults.py); attention_backends: fitted"}
        cal["attention_backends"] = {b: {k: round(v, 6) for k, v in sorted(p.items())}
                                     for b, p in sorted(backends.items())}
        cal["provenance"]["attention"] = _attention_provenance(gid, fits, obs, seed, date)
        doc["calibration"] = cal
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return fits


def _attention_provenance(gid: str, fits: dict[str, AttentionFit], obs: list, seed: int,
                          date: str) -> dict:
    out: dict = {
        "script": "scripts/fit_public.py", "date": date, "seed": seed,
        "shapewise_version": __version__,
        "data": "public measurements, ../shared/data (see its README); not shipped",
        "method": "scipy.optimize.least_squares on log(predicted/measured), soft-L1 loss, "
        "per backend over all GPUs (shared softmax_exposed and cta_overhead; per GPU the "
        "efficiencies, and softmax_exposed where >= 40 timings span >= 3 head dims; "
        "bwd_quant_fp8 in place of bwd_efficiency_fp8 where the fp8 backward timings span "
        ">= 2 head dims); 5-fold cross-validation",
        "backends": {},
    }
    for backend, f in sorted(fits.items()):
        if gid not in f.per_gpu:
            continue
        rows = [o for o in f.observations if o.gpu == gid]
        files: dict[str, int] = defaultdict(int)
        for o in rows:
            files[o.source] += 1
        harness = {k.split("|", 1)[1]: round(v, 2) for k, v in f.harness_us.items()
                   if k.startswith(gid + "|")}
        out["backends"][backend] = {
            "rows_used": len(rows), "fitted_on": dict(sorted(files.items())),
            "harness_us": harness,
            "harness_note": "fixed time per call of each file's timer, fitted with the "
            "kernel terms and not used in predictions (the profile's launch_us is a kernel "
            "timer's)",
            "cross_validated": _cv_groups(f, gid),
        }
    return out


def _cv_groups(f: AttentionFit, gid: str) -> dict:
    """Held-out errors of ``gid``'s timings per dtype and direction, and per direction over
    every dtype (issue #11's grouping; finite numbers only)."""
    out: dict = {}
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for o, cv in zip(f.observations, f.cv_predictions, strict=True):
        if o.gpu == gid and np.isfinite(cv):
            d = "bwd" if o.backward else "fwd"
            groups[f"{o.dtype} {d}"].append((cv, o.time_s))
            groups[f"all {d}"].append((cv, o.time_s))
    for key, pairs in sorted(groups.items()):
        st = error_stats(np.array([p for p, _ in pairs]), np.array([m for _, m in pairs]))
        out[key] = {"n": st["n"], "median_abs_pct": round(st["median_abs_pct"], 2),
                    "p90_abs_pct": round(st["p90_abs_pct"], 2)}
    return out


def _print_legacy_rates(fits: dict[str, AttentionFit]) -> None:
    """FLOP per clock per SM of the FlashAttention-2-class fits (defaults.ATTENTION_PRIORS)."""
    for backend in ("fa2", "sdpa-flash"):
        f = fits.get(backend)
        if f is None:
            continue
        for gid, prm in sorted(f.per_gpu.items()):
            g = get_gpu(gid)
            per_clock = g.sm_count * g.boost_clock_mhz * 1e6
            rates = {d: prm[f"{d}_efficiency"] * g.peak_flops("bf16") / per_clock
                     for d in ("fwd", "bwd") if f"{d}_efficiency" in prm}
            print(f"    {backend} on {gid}: " + ", ".join(
                f"{d} {r:.0f} FLOP/clock/SM" for d, r in rates.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--data", help="folder of the public CSVs (default ../shared/data)")
    ap.add_argument("--write", action="store_true", help="update profiles/*.json")
    ap.add_argument("--max-per-source", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="profile ids to fit (default: all with data)")
    ap.add_argument("--skip-gemm", action="store_true", help="fit attention backends only")
    ap.add_argument("--skip-attention", action="store_true", help="fit GEMMs only")
    args = ap.parse_args(argv)
    folder = public_data.data_or_say(args.data, script="fit_public", skipped="nothing fitted")
    if folder is None:
        return 0
    by_gpu: dict[str, list] = defaultdict(list)
    for gid, o in public_data.read_calibration(folder):
        by_gpu[gid].append(o)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    for gid in sorted(by_gpu) if not args.skip_gemm else ():
        if args.only and gid not in args.only:
            continue
        obs = _subsample(by_gpu[gid], args.max_per_source, args.seed)
        if len(obs) < 8:
            print(f"{gid}: {len(obs)} points, too few to fit; keeps defaults")
            continue
        cal = fit_one(gid, obs, seed=args.seed, date=date)
        effs = ", ".join(f"{d}={v:.3f}" for d, v in sorted(cal["gemm_efficiency"].items()))
        print(f"{gid}: {len(obs)} points; eff {effs}; launch {cal['launch_us']:.2f} us, "
              f"k_fill {cal['k_fill']:.0f}, bw {cal['bandwidth_efficiency']:.2f}, "
              f"reuse {cal['tile_reuse_cost']:.3f}, mis16 {cal['misalign_16b_factor']:.3f}")
        for name, st in cal["provenance"]["stages"].items():
            cv = st["cross_validated"]["all"]
            ins = st["in_sample"]["all"]
            print(f"    {name:11s} n={st['n_points']:5d}  "
                  f"in-sample median {ins['median_abs_pct']:.1f}% "
                  f"p90 {ins['p90_abs_pct']:.1f}%  | CV median {cv['median_abs_pct']:.1f}% "
                  f"p90 {cv['p90_abs_pct']:.1f}%")
        if args.write:
            path = REPO / "profiles" / f"{gid}.json"
            doc = json.loads(path.read_text())
            old = doc.get("calibration") or {}
            if old.get("attention_backends"):  # the attention fit below owns these
                cal["attention_backends"] = old["attention_backends"]
                cal["provenance"]["attention"] = old["provenance"].get("attention")
            if old.get("attention_decode"):  # scripts/fit_decode.py owns these
                cal["attention_decode"] = old["attention_decode"]
                cal["provenance"]["attention_decode"] = old["provenance"].get(
                    "attention_decode")
            doc["calibration"] = cal
            path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    if not args.skip_attention:
        fit_attention_public(folder, write=args.write, seed=args.seed, date=date,
                             only=args.only)
    _print_cross_gpu_means()
    if public_data.SKIPPED:
        print("skipped rows:", dict(public_data.SKIPPED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
