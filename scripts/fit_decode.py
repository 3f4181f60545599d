#!/usr/bin/env python3
"""Fit the decode / short-query attention model on the vidur A100 decode timings.

    python scripts/fit_decode.py [--data ../shared/data] [--write] [--seed 0]

Reads the 10,240 decode rows of ``vidur_a100_attention.csv`` (A100, fp16, batch 1-128 ×
cache 32-4032, 32 q / 4 kv heads, head dim 128; its README §3) and fits the five physical
parameters of :mod:`shapewise.cost.attention_decode` (fixed µs per call, achieved HBM share,
one SM's stream rate, µs per CTA wave, µs of the split combine) by least squares on
log(predicted / measured) with a soft-L1 loss. Held-out errors: 5-fold cross-validation
grouped by batch size (every batch size is predicted by a fit that never saw it).
``--write`` stores the parameters in profiles/a100-sxm-80gb.json under
``calibration.attention_decode`` and their provenance under
``calibration.provenance.attention_decode`` (keys no other fit writes). Without the data
folder it says so and exits 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))

import public_data

from shapewise import __version__, get_gpu
from shapewise.cost.attention_decode import (
    DECODE_KEYS,
    DECODE_PRIOR,
    DecodeParams,
    DecodeShape,
    decode_shape,
    kernel_time,
)
from shapewise.cost.defaults import calibration_of
from shapewise.cost.fit import AttentionObservation, error_stats

REPO = Path(__file__).resolve().parents[1]
SRC = "vidur_a100_attention.csv"
GPU_ID = "a100-sxm-80gb"
START = dict(DECODE_PRIOR)
BOUNDS = {"fixed_us": (0.0, 50.0), "hbm_fraction": (0.1, 1.0), "sm_stream_share": (0.1, 8.0),
          "cta_us": (0.0, 50.0), "combine_us": (0.0, 50.0)}
#: batch ranges the errors are reported over (1-4: latency-bound, split into many CTAs;
#: 22+ : no split; 55+ : more than one wave of CTAs)
BATCH_RANGES = ((1, 4), (5, 16), (17, 32), (33, 64), (65, 128))
FOLDS = 5


def kv_capacity(obs: Sequence[AttentionObservation]) -> int:
    """The block-table width the split heuristic saw: the largest cache profiled.

    flash_attn_with_kvcache sizes its splits on ``max_num_blocks_per_seq · page_size``
    (flash_api.cpp), and vidur's profiler gives every decode batch a table spanning the
    largest cache it profiles. The file shows it: at batch 8 the time grows 3 µs per
    128-key tile up to 11 tiles and then stays flat, the 3 splits of 11 blocks that FA2's
    heuristic picks for a 32-block table (batch 4: flat from 6 tiles, 6 splits; batch 11-13:
    from 16 tiles, 2 splits). Sized on each row's own cache instead, the fit is worse (the
    script prints both).
    """
    return max(o.seq_len_kv for o in obs)


class Problem:
    """The parameter-free part of every row, computed once."""

    def __init__(self, obs: Sequence[AttentionObservation], capacity: int | None):
        gpu = get_gpu(GPU_ID)
        cal = calibration_of(gpu)
        self.bandwidth = gpu.bandwidth
        self.sm_rate = gpu.peak_flops("fp16") * cal.efficiency("fp16") / gpu.sm_count
        self.shapes: list[DecodeShape] = [
            decode_shape(gpu, batch=o.batch, heads=o.heads, kv_heads=o.kv_heads,
                         seq_len=o.seq_len, keys=o.seq_len_kv, head_dim=o.head_dim,
                         head_dim_v=o.head_dim_v, dtype=o.dtype, kv_capacity=capacity)
            for o in obs]
        self.measured = np.array([o.time_s for o in obs])
        self.batch = np.array([o.batch for o in obs])

    def predict(self, x: Sequence[float], idx: np.ndarray | None = None) -> np.ndarray:
        p = DecodeParams(**dict(zip(DECODE_KEYS, (float(v) for v in x), strict=True)))
        rows = range(len(self.shapes)) if idx is None else idx
        return np.array([kernel_time(self.shapes[i], p, bandwidth=self.bandwidth,
                                     sm_rate=self.sm_rate)[0] for i in rows])

    def fit(self, idx: np.ndarray) -> np.ndarray:
        lo = [BOUNDS[k][0] for k in DECODE_KEYS]
        hi = [BOUNDS[k][1] for k in DECODE_KEYS]
        x0 = [START[k] for k in DECODE_KEYS]
        meas = self.measured[idx]
        res = least_squares(lambda x: np.log(self.predict(x, idx) / meas), x0,
                            bounds=(lo, hi), loss="soft_l1", f_scale=0.05)
        return res.x


def by_batch(pred: np.ndarray, meas: np.ndarray, batch: np.ndarray) -> dict:
    out = {"all": _stats(pred, meas)}
    for lo, hi in BATCH_RANGES:
        m = (batch >= lo) & (batch <= hi)
        out[f"batch {lo}-{hi}"] = _stats(pred[m], meas[m])
    return out


def _stats(pred: np.ndarray, meas: np.ndarray) -> dict:
    st = error_stats(pred, meas)
    return {"n": st["n"], "median_abs_pct": round(st["median_abs_pct"], 2),
            "p90_abs_pct": round(st["p90_abs_pct"], 2)}


def cross_validate(prob: Problem, seed: int) -> np.ndarray:
    """Held-out predictions: folds of whole batch sizes, each predicted by the others' fit."""
    sizes = np.unique(prob.batch)
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(sizes), np.arange(len(sizes)) % FOLDS, strict=True))
    fold = np.array([fold_of[b] for b in prob.batch])
    out = np.empty(len(prob.batch))
    for f in range(FOLDS):
        test = np.flatnonzero(fold == f)
        x = prob.fit(np.flatnonzero(fold != f))
        out[test] = prob.predict(x, test)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--data", help="folder of the public CSVs (default ../shared/data)")
    ap.add_argument("--write", action="store_true", help=f"update profiles/{GPU_ID}.json")
    ap.add_argument("--seed", type=int, default=0, help="fold assignment of the batch sizes")
    args = ap.parse_args(argv)
    folder = public_data.data_dir(args.data)
    if folder is None or not (folder / SRC).is_file():
        print(f"fit_decode: {SRC} not found (../shared/data or --data); nothing fitted",
              file=sys.stderr)
        return 0
    obs = list(public_data.read_vidur_decode(folder))
    cap = kv_capacity(obs)
    every = np.arange(len(obs))
    own = Problem(obs, None)
    x_own = own.fit(every)
    e_own = by_batch(own.predict(x_own), own.measured, own.batch)["all"]
    print(f"splits sized on each row's own cache: in-sample median "
          f"{e_own['median_abs_pct']:.1f}% p90 {e_own['p90_abs_pct']:.1f}%")
    prob = Problem(obs, cap)
    x = prob.fit(every)
    params = {k: round(float(v), 4) for k, v in zip(DECODE_KEYS, x, strict=True)}
    ins = by_batch(prob.predict(x), prob.measured, prob.batch)
    cv = by_batch(cross_validate(prob, args.seed), prob.measured, prob.batch)
    print(f"{len(obs)} decode rows, block table of {cap} keys: "
          + ", ".join(f"{k} {v:g}" for k, v in params.items()))
    for key in ins:
        print(f"    {key:14s} n={ins[key]['n']:5d}  in-sample median "
              f"{ins[key]['median_abs_pct']:5.1f}% p90 {ins[key]['p90_abs_pct']:5.1f}%  | "
              f"held out median {cv[key]['median_abs_pct']:5.1f}% "
              f"p90 {cv[key]['p90_abs_pct']:5.1f}%")
    if not args.write:
        return 0
    path = REPO / "profiles" / f"{GPU_ID}.json"
    doc = json.loads(path.read_text())
    cal = doc["calibration"]
    cal["attention_decode"] = params
    cal.setdefault("provenance", {})["attention_decode"] = {
        "fitted_on": {SRC: {"rows_used": len(obs),
                            "source": public_data.SOURCE_COMMITS[SRC],
                            "rows": "phase == decode (batch 1-128, cache 32-4032)"}},
        "data": "public measurements, ../shared/data (see its README §3); not shipped",
        "script": "scripts/fit_decode.py", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "shapewise_version": __version__, "seed": args.seed,
        "method": "scipy.optimize.least_squares on log(predicted/measured), soft-L1 loss "
        "(f_scale 0.05), 5 parameters; held out: 5-fold cross-validation over whole batch "
        "sizes",
        "kv_capacity": cap,
        "kv_capacity_note": "the split heuristic sized on a block table spanning the "
        "file's largest cache (scripts/fit_decode.py kv_capacity)",
        "in_sample": ins, "cross_validated": cv,
    }
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
