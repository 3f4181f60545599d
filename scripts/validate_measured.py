#!/usr/bin/env python3
"""How well a measured profile predicts: held-out GEMM errors, attention, public table.

    python scripts/validate_measured.py --profile PROFILE.json --bench BENCH.json [...]
                                        [--data ../shared/data] [--markdown]

1. GEMM: the fit's k-fold cross-validated errors (held-out points) by dtype and regime,
   recomputed here from the bench files with the same folds as ``shapewise fit``.
2. Attention: the fused-attention timings of the bench against the profile's predictions.
3. When the public validation table is found and the profile's GPU is in it (H100, B200,
   MI300-series), the table's errors with this profile, as scripts/validate_public.py
   reports them for the shipped profiles.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shapewise.bench.fit import gemm_observations, load_bench
from shapewise.cost.attention import attention_time
from shapewise.cost.fit import error_stats, fit_gemm
from shapewise.hardware.catalog import load_profile

_XLA_BASE = {"h100-sxm": "sm_90", "b200": "sm_100_B200", "mi300x": "gfx942"}


def _fmt(s: dict) -> str:
    return f"n={s['n']:4d} median {s['median_abs_pct']:5.1f}% p90 {s['p90_abs_pct']:5.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--bench", required=True, nargs="+")
    ap.add_argument("--data", help="public data folder (default ../shared/data)")
    args = ap.parse_args(argv)
    gpu = load_profile(args.profile)
    cal = gpu.calibration
    if cal is None:
        print(f"{args.profile}: no calibration block", file=sys.stderr)
        return 2
    print(f"profile {gpu.id} ({gpu.name}); fitted {cal.provenance.get('date', '?')}")

    # 1. GEMM, held-out, by dtype (refit without the profile's own numbers, same folds)
    docs = [(b, load_bench(b)) for b in args.bench]
    obs = [o for where, doc in docs for o in gemm_observations(doc, where)]
    base = gpu.with_calibration(None)  # type: ignore[arg-type]
    print("\nGEMM, cross-validated (5-fold, held-out points):")
    for dt in sorted({o.dtype for o in obs}):
        sub = [o for o in obs if o.dtype == dt]
        if len(sub) < 8:
            continue
        res = fit_gemm(base, sub, seed=int(cal.provenance.get("seed", 0)))
        for regime, stats in res.cross_validated.items():
            if isinstance(stats, dict):
                print(f"  {dt:5s} {regime:8s} {_fmt(stats)}")

    # 2. attention
    pred, meas = [], []
    for _, doc in docs:
        for r in doc["measurements"]:
            if (r.get("kind") != "attention" or r.get("status") != "ok"
                    or r.get("backend") not in ("flash", "cudnn", "flash_attn")):
                continue
            try:
                pred.append(attention_time(
                    batch=int(r["batch"]), heads=int(r["heads"]), seq_len=int(r["seq_len"]),
                    head_dim=int(r["head_dim"]), gpu=gpu, dtype=str(r["dtype"]),
                    causal=bool(r["causal"]), kv_heads=int(r.get("kv_heads") or r["heads"]),
                    seq_len_kv=int(r.get("seq_len_kv") or r["seq_len"]),
                    backward=bool(r.get("backward"))))
                meas.append(float(r["median_s"]))
            except (KeyError, TypeError, ValueError):
                continue
    if meas:
        print("\nattention (fused backends), in-sample after the efficiency scaling:")
        print("  " + _fmt(error_stats(np.array(pred), np.array(meas))))

    # 3. the public validation table, when present
    try:
        import public_data
    except ImportError:
        return 0
    folder = public_data.data_dir(args.data)
    base_id = gpu.id.removesuffix("-measured")
    if folder is None or base_id not in _XLA_BASE:
        print("\npublic validation table: not found or GPU not in it; skipped")
        return 0
    print(f"\npublic validation table ({public_data.VALIDATION_FILE}), this profile:")
    from shapewise.cost.gemm import gemm_time

    rows: dict[str, list] = {}
    for gid, xkey, o in public_data.read_validation(folder):
        if gid != base_id:
            continue
        rows.setdefault(xkey, []).append(
            (gemm_time(o.m, o.n, o.k, gpu=gpu, dtype=o.dtype, batch=o.batch), o.time_s))
    for xkey, pairs in sorted(rows.items()):
        p, m = np.array(pairs).T
        print(f"  {xkey:18s} {_fmt(error_stats(p, m))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
