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
from shapewise.cost.fit import SHARED_BOUNDS, TENSOR_DTYPES, fit_gemm
from shapewise.hardware.catalog import calibration_to_dict, get_gpu

REPO = Path(__file__).resolve().parents[1]

#: Terms a file's timing method cannot pin down. TunableOp reports the mean host-visible
#: time per call (launch gaps included; data README §6), not a kernel timer's duration, so
#: the fixed per-launch term keeps its kernel-timer default when only such data exist.
METHOD_FIXED = {"tunableop_mi300x_fp16_gemm.csv": ("launch_us",)}


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
    prov["attention"] = "spec-derived defaults (no kernel-level public attention timings)"
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--data", help="folder of the public CSVs (default ../shared/data)")
    ap.add_argument("--write", action="store_true", help="update profiles/*.json")
    ap.add_argument("--max-per-source", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="profile ids to fit (default: all with data)")
    args = ap.parse_args(argv)
    folder = public_data.data_dir(args.data)
    if folder is None:
        print("fit_public: public data folder not found (../shared/data or --data); "
              "nothing fitted", file=sys.stderr)
        return 0
    by_gpu: dict[str, list] = defaultdict(list)
    for gid, o in public_data.read_calibration(folder):
        by_gpu[gid].append(o)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    for gid in sorted(by_gpu):
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
            doc["calibration"] = cal
            path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    _print_cross_gpu_means()
    if public_data.SKIPPED:
        print("skipped rows:", dict(public_data.SKIPPED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
