#!/usr/bin/env python3
"""Prediction errors of the shipped cost model on the public validation set.

    python scripts/validate_public.py [--data ../shared/data] [--write docs/validation.md]

Reads ``xla_matmul_perf_table.csv`` (XLA's default matmul perf table: H100 sm_90, B200
sm_100, MI300-series gfx942; bf16 and f32 = TF32 rows), predicts every row with the
profiles as shipped, and reports the median and p90 absolute % error per GPU and dtype and
where the model is worst. Nothing is fitted or tuned here: the validation file is never
used for calibration. When the data folder is absent it says so and exits 0.

It also lists the problems that a calibration file measured too (same GPU, same m, n, k and
batch, 16-bit against 16-bit): how far two public measurements of one kernel disagree is the
floor under any error a model fitted on one of them can reach on the other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import public_data

from shapewise import __version__, gemm_time, get_gpu
from shapewise.cost.defaults import calibration_of

BEGIN = "<!-- validation:begin (scripts/validate_public.py writes between these marks) -->"
END = "<!-- validation:end -->"


def evaluate(folder: Path) -> tuple[list[dict], dict]:
    groups: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for gid, key, o in public_data.read_validation(folder):
        pred = gemm_time(o.m, o.n, o.k, gpu=gid, dtype=o.dtype, batch=o.batch)
        groups[(gid, key)].append((o, pred))
    table = []
    worst: dict = {}
    for (gid, key), rows in sorted(groups.items()):
        meas = np.array([o.time_s for o, _ in rows])
        pred = np.array([p for _, p in rows])
        err = (pred / meas - 1) * 100
        gpu = get_gpu(gid)
        cal = calibration_of(gpu)
        table.append({
            "gpu": gid, "xla_dtype": key, "model_dtype": rows[0][0].dtype, "n": len(rows),
            "median_abs_pct": float(np.median(np.abs(err))),
            "p90_abs_pct": float(np.percentile(np.abs(err), 90)),
            "median_signed_pct": float(np.median(err)),
            "calibration": cal.status,
            "efficiency_origin": dict(cal.provenance.get("efficiency_origin", {})).get(
                rows[0][0].dtype, "spec-derived default"),
        })
        idx = np.argsort(-np.abs(err))[:3]
        worst[(gid, key)] = [(rows[i][0], float(err[i])) for i in idx]
    return table, worst


def _family(dtype: str) -> str:
    # fp16 and bf16 run the same tensor-core paths at the same peak on these GPUs
    return "16-bit" if dtype in ("fp16", "bf16") else dtype


def cross_check(folder: Path) -> list[dict]:
    """Validation rows whose exact problem a calibration file also measured."""
    wanted = set(public_data._XLA.values())
    measured: dict[tuple, list] = defaultdict(list)
    for gid, o in public_data.read_calibration(folder):
        if gid in wanted:
            measured[(gid, _family(o.dtype), o.batch, o.m, o.n, o.k)].append(o)
    out = []
    for gid, key, o in public_data.read_validation(folder):
        hits = measured.get((gid, _family(o.dtype), o.batch, o.m, o.n, o.k))
        if not hits:
            continue
        t_cal = float(np.median([h.time_s for h in hits]))
        out.append({
            "gpu": gid, "xla_dtype": key, "batch": o.batch, "m": o.m, "n": o.n, "k": o.k,
            "calibration_us": t_cal * 1e6, "calibration_sources": sorted({h.source for h in hits}),
            "calibration_rows": len(hits), "validation_us": o.time_s * 1e6,
            "model_us": gemm_time(o.m, o.n, o.k, gpu=gid, dtype=o.dtype, batch=o.batch) * 1e6,
        })
    return sorted(out, key=lambda r: (r["gpu"], r["xla_dtype"], r["batch"], r["m"], r["n"],
                                      r["k"]))


def render_cross_check(rows: list[dict]) -> list[str]:
    if not rows:
        return ["No validation row measures a problem that a calibration file also measured."]
    lines = [
        "Problems measured by both a calibration file and the validation table (same GPU, "
        "m, n, k and batch; the calibration side is fp16, the validation side bf16, which "
        "run at the same peak). Where the two sources disagree, no model fitted on one can "
        "match the other:",
        "",
        "| GPU profile | XLA dtype | b | m×n×k | calibration file | calibration µs "
        "| validation µs | validation / calibration | model µs |",
        "|---|---|---:|---|---|---:|---:|---:|---:|",
    ]
    summary = []
    for gid in sorted({r["gpu"] for r in rows}):
        ratios = [r["validation_us"] / r["calibration_us"] for r in rows if r["gpu"] == gid]
        summary.append(f"- {gid}: {len(ratios)} rows; validation / calibration median "
                       f"{np.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}")
    lines[1:1] = ["", *summary]
    for r in rows:
        src = ", ".join(r["calibration_sources"])
        if r["calibration_rows"] > 1:
            src += f" (median of {r['calibration_rows']})"
        lines.append(
            f"| {r['gpu']} | `{r['xla_dtype']}` | {r['batch']} | {r['m']}×{r['n']}×{r['k']} | "
            f"{src} | {r['calibration_us']:.1f} | {r['validation_us']:.1f} | "
            f"{r['validation_us'] / r['calibration_us']:.2f} | {r['model_us']:.1f} |")
    return lines


def render(table: list[dict], worst: dict, overlap: list[dict] | None = None) -> str:
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    lines = [
        BEGIN,
        f"Generated {date} by `python scripts/validate_public.py --write docs/validation.md` "
        f"(shapewise {__version__}) from `xla_matmul_perf_table.csv` "
        f"({public_data.SOURCE_COMMITS[public_data.VALIDATION_FILE]}); "
        "the model was never fitted or tuned on this file.",
        "",
        "| GPU profile | XLA dtype | model dtype | rows | median abs err % | p90 abs err % "
        "| median signed err % | efficiency (η) from |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['gpu']} | `{r['xla_dtype']}` | {r['model_dtype']} | {r['n']} | "
            f"{r['median_abs_pct']:.1f} | {r['p90_abs_pct']:.1f} | "
            f"{r['median_signed_pct']:+.1f} | {r['efficiency_origin']} |")
    lines += ["", "Worst rows per group (signed error: + means predicted slower than measured):",
              ""]
    for (gid, key), rows in sorted(worst.items()):
        items = "; ".join(f"b={o.batch} {o.m}x{o.n}x{o.k} {e:+.0f}%" for o, e in rows)
        lines.append(f"- {gid} `{key}`: {items}")
    if overlap is not None:
        lines += ["", *render_cross_check(overlap)]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--data", help="folder of the public CSVs (default ../shared/data)")
    ap.add_argument("--write", metavar="MD", help="replace the marked block in this file")
    args = ap.parse_args(argv)
    folder = public_data.data_dir(args.data)
    if folder is None:
        print("validate_public: validation data not found (../shared/data or --data); "
              "no errors computed", file=sys.stderr)
        return 0
    table, worst = evaluate(folder)
    text = render(table, worst, cross_check(folder))
    print(text)
    if args.write:
        path = Path(args.write)
        old = path.read_text() if path.exists() else ""
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + text + tail)
        else:
            path.write_text(old + ("\n" if old else "") + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
