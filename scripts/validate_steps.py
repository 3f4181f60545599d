#!/usr/bin/env python3
"""Whole training steps against llm-foundry's published MPT runs.

    python scripts/validate_steps.py [--data ../shared/data] [--write docs/validation.md]
    python scripts/validate_steps.py --fit     # refit the step parameters, print them

Reads ``llmfoundry_mpt_throughput.csv`` and ``mpt_model_configs.csv`` (see the data README,
§15), builds each run's shape and plan, predicts its tokens/s per GPU with
:func:`shapewise.estimate` and reports the median absolute, median signed and p90 absolute
% error per GPU family (A100, H100). fp8 rows are refused by the model (fp8 steps are not
modelled) and listed as refused. When the data folder is absent it says so and exits 0.

How a row becomes a plan: ``n_gpus`` data-parallel ranks; FSDP ``FULL_SHARD`` is
``fsdp="full"``, ``SHARD_GRAD_OP`` is ZeRO-2; activation checkpointing is full recompute;
the global batch is in sequences; Composer's FSDP mixed precision ``DEFAULT`` (2023)
all-gathers fp32 weights and reduces bf16 gradients, ``PURE`` does both in bf16.
The MPT shape: GPT layout (LayerNorm with bias, GELU MLP of 4h,
biases), tied embeddings and a learned position table of ``seq_len`` rows, so that its
parameter count is the README's ``NumParams``.

``--fit`` fits the step parameters of :mod:`shapewise.step_params` on these rows (the only
data they are fitted on): the sustained clock factor of each GPU type, and the shared
per-kernel host overhead, per-step overhead and overlap efficiency; least squares on
log(predicted/published).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BEGIN = "<!-- validate_steps:begin (scripts/validate_steps.py writes between these marks) -->"
END = "<!-- validate_steps:end -->"
RUNS = "llmfoundry_mpt_throughput.csv"
CONFIGS = "mpt_model_configs.csv"
#: the catalog profile of each GPU column value
GPUS = {"a100_40gb": "a100-sxm-40gb", "a100_80gb": "a100-sxm-80gb", "h100_80gb": "h100-sxm"}
FAMILY = {"a100_40gb": "A100", "a100_80gb": "A100", "h100_80gb": "H100"}
SOURCE = "mosaicml/llm-foundry@8c8dd48f:scripts/train/benchmarking/README.md"


def data_dir(explicit: str | None = None) -> Path | None:
    """``explicit`` (``--data``: it must hold the runs, else one line and exit 2), else
    $SHAPEWISE_DATA or ../shared/data; None when neither has them (as scripts/public_data.py)."""
    if explicit is not None:
        if (Path(explicit) / RUNS).is_file():
            return Path(explicit)
        print(f"validate_steps.py: --data {explicit}: no {RUNS} there", file=sys.stderr)
        raise SystemExit(2)
    for c in (os.environ.get("SHAPEWISE_DATA"),
              Path(__file__).resolve().parents[2] / "shared" / "data"):
        if c and (Path(c) / RUNS).is_file():
            return Path(c)
    return None


def read_rows(folder: Path) -> Iterator[dict[str, str]]:
    with open(folder / RUNS, newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def mpt_shape(row: dict[str, str]) -> Any:
    from shapewise import ModelShape

    return ModelShape.gpt(
        hidden_size=int(row["d_model"]), num_attention_heads=int(row["n_heads"]),
        num_hidden_layers=int(row["n_layers"]), intermediate_size=int(row["ffn_hidden"]),
        vocab_size=int(row["vocab_size"]), max_position_embeddings=int(row["seq_len"]),
        tie_word_embeddings=True, bias=True, name=row["model"])


def case(row: dict[str, str]) -> dict[str, Any]:
    """The estimate() arguments of one published run."""
    from shapewise import Plan

    sharding = row["fsdp_sharding"]
    if sharding not in ("FULL_SHARD", "SHARD_GRAD_OP"):
        raise ValueError(f"fsdp_sharding: {sharding!r} is not modelled")
    plan = Plan(dp=int(row["n_gpus"]), micro_batch=int(row["micro_batch"]),
                global_batch=int(row["global_batch_seqs"]),
                fsdp="full" if sharding == "FULL_SHARD" else None,
                zero=2 if sharding == "SHARD_GRAD_OP" else 0,
                recompute="full" if row["act_ckpt"] == "True" else "none")
    dtype = "fp8" if "fp8" in row["precision"] else "bf16"
    return {"gpu": GPUS[row["gpu"]], "seq_len": int(row["seq_len"]), "plan": plan,
            "dtype": dtype,
            # Composer's FSDP mixed precision in 2023: DEFAULT gathers the fp32 weights and
            # reduces gradients in bf16; PURE does both in bf16
            "grad_reduce_dtype": "bf16",
            "param_gather_dtype": "bf16" if row["mp_mode"] == "PURE" else "fp32",
            # llm-foundry's MPT default loss_fn 'fused_crossentropy' (flash-attn's kernel)
            "fused_loss": True, "attention_backend": ATTENTION_BACKEND}


def evaluate(folder: Path, *, params: dict[str, Any] | None = None,
             gpus: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One record per row: the prediction and its error, or why it was refused."""
    from shapewise.errors import InputError
    from shapewise.plan import make_setup
    from shapewise.step import price_step

    out = []
    for row in read_rows(folder):
        rec: dict[str, Any] = {"model": row["model"], "gpu": row["gpu"],
                               "family": FAMILY.get(row["gpu"], row["gpu"]),
                               "seq_len": int(row["seq_len"]), "n_gpus": int(row["n_gpus"]),
                               "precision": row["precision"],
                               "published": float(row["tput_tok_per_s_per_gpu"])}
        try:
            shape = mpt_shape(row)
            kw = case(row)
            kw["gpu"] = (gpus or {}).get(kw["gpu"]) or with_attention_rate(
                kw["gpu"], MPT_TRITON_ATTENTION["fwd"], MPT_TRITON_ATTENTION["bwd"])
            setup = make_setup(shape, **kw)
            prm = params.get(setup.gpu.id) if params else None
            est = price_step(shape, setup, params=prm)
        except (InputError, ValueError) as exc:
            rec["refused"] = str(exc).splitlines()[0]
            out.append(rec)
            continue
        rec.update(predicted=est.tokens_per_s, fits=est.fits, mfu=est.mfu,
                   memory_gib=est.memory_bytes / 2**30,
                   error_pct=(est.tokens_per_s / rec["published"] - 1) * 100)
        out.append(rec)
    return out


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if "error_pct" in r:
            groups[r["family"]].append(r)
            groups["all"].append(r)
    table = []
    for fam in sorted(groups, key=lambda k: (k == "all", k)):
        errs = [r["error_pct"] for r in groups[fam]]
        table.append({
            "family": fam, "n": len(errs),
            "median_abs_pct": _pct([abs(e) for e in errs], 0.5),
            "median_signed_pct": _pct(errs, 0.5),
            "p90_abs_pct": _pct([abs(e) for e in errs], 0.9),
            "infeasible": sum(1 for r in groups[fam] if not r["fits"]),
        })
    return table


def render(records: list[dict[str, Any]], table: list[dict[str, Any]]) -> str:
    from shapewise import __version__

    refused = [r for r in records if "refused" in r]
    lines = [
        BEGIN,
        f"Whole steps: llm-foundry MPT runs ({SOURCE}, `{RUNS}`), tokens/s per GPU, "
        f"shapewise {__version__}, {dt.date.today().isoformat()}.",
        "",
        "In sample: the six step parameters of docs/cost-model.md §7 (two sustained clocks, "
        "the per-step overhead, the FSDP overlap efficiency and MPT's attention rates) were "
        "fitted on these rows (`python scripts/validate_steps.py --fit`); everything else "
        "is the kernel-level model as shipped. Reference points on the same rows (#10): "
        "llm-analysis with one 50% FLOP efficiency, 15% median error; '40% MFU', 18%.",
        "",
        "| GPUs | rows | median abs error | median signed error | p90 abs error | "
        "published plans infeasible |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in table:
        lines.append(f"| {t['family']} | {t['n']} | {t['median_abs_pct']:.1f}% | "
                     f"{t['median_signed_pct']:+.1f}% | {t['p90_abs_pct']:.1f}% | "
                     f"{t['infeasible']} |")
    ok = [r for r in records if "error_pct" in r]
    worst = sorted(ok, key=lambda r: -abs(r["error_pct"]))[:5]
    lines += ["", "Worst rows: " + "; ".join(
        f"{r['model']} seq {r['seq_len']} on {r['n_gpus']}× {r['gpu']}: "
        f"{r['error_pct']:+.0f}%" for r in worst) + "."]
    if refused:
        why = sorted({r["refused"] for r in refused})
        lines += ["", f"Refused ({len(refused)} rows, as they should be): " + "; ".join(why)]
    lines.append(END)
    return "\n".join(lines)


def write_into(path: Path, block: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## Whole training steps\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


#: MPT's attention (``attn_impl: triton``) is Tri Dao's Triton FlashAttention, built with
#: llm-foundry's pinned pre-MLIR Triton (``triton-pre-mlir``): Ampere mma.sync code on every
#: GPU, so its rate is a number of FLOPs per SM per clock, the same on A100 and H100.
ATTENTION_BACKEND = "triton"


def with_attention_rate(gpu_id: str, fwd: float, bwd: float) -> Any:
    """The GPU profile with its attention efficiencies set from per-SM-per-clock rates."""
    import dataclasses

    from shapewise.cost.defaults import calibration_of
    from shapewise.hardware.catalog import get_gpu

    g = get_gpu(gpu_id)
    peak = g.peak_flops("bf16")
    per_clock = g.sm_count * g.boost_clock_mhz * 1e6
    base = calibration_of(g)
    rates = {"fwd_efficiency": min(fwd * per_clock / peak, 1.0),
             "bwd_efficiency": min(bwd * per_clock / peak, 1.0)}
    cal = dataclasses.replace(base, attention_backends={**base.attention_backends,
                                                        ATTENTION_BACKEND: rates})
    return dataclasses.replace(g, calibration=cal)


#: The fitted rate of that kernel (``--fit``). It is a property of one old member of the
#: ``triton`` backend family, so it is not shipped in the profiles: the validation gives its
#: copies of them these rates as the backend's calibration (docs/cost-model.md §7).
MPT_TRITON_ATTENTION = {"fwd": 1576.0, "bwd": 618.0}

#: the fitted parameters, their starting values and bounds (units as named)
FIT_PARAMETERS = {
    "sustained_clock_a100": (0.9, 0.5, 1.0),
    "sustained_clock_h100": (0.8, 0.4, 1.0),
    "attention_fwd_flop_per_clock": (1500.0, 200.0, 2048.0),
    "attention_bwd_flop_per_clock": (650.0, 100.0, 2048.0),
    "kernel_overhead_us": (0.0, 0.0, 50.0),
    "step_overhead_ms": (75.0, 0.0, 2000.0),
    # (started below the flat region above ~0.5, where every bucket already hides)
    "overlap_efficiency": (0.4, 0.0, 1.0),
}


def params_from(x: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(StepParams per GPU id, GPU profile per GPU id) for the values ``x``."""
    from shapewise.step_params import StepParams

    prm, gpus = {}, {}
    for gid in sorted(set(GPUS.values())):
        fam = "h100" if "h100" in gid else "a100"
        prm[gid] = StepParams(sustained_clock=x[f"sustained_clock_{fam}"],
                              kernel_overhead_s=x["kernel_overhead_us"] * 1e-6,
                              step_overhead_s=x["step_overhead_ms"] * 1e-3,
                              overlap_efficiency=x["overlap_efficiency"])
        gpus[gid] = with_attention_rate(gid, x["attention_fwd_flop_per_clock"],
                                        x["attention_bwd_flop_per_clock"])
    return prm, gpus


def fit(folder: Path, *, fixed: dict[str, float] | None = None,
        keep: Any = None) -> dict[str, Any]:
    """Least squares on log(predicted/published) over every bf16 row (see the module doc);
    ``fixed`` holds some parameters at given values."""
    import numpy as np
    from scipy.optimize import least_squares

    fixed = dict(fixed or {})
    unknown = set(fixed) - set(FIT_PARAMETERS)
    if unknown:
        raise SystemExit(f"--fix: unknown parameter(s) {', '.join(sorted(unknown))}")
    names = [k for k in FIT_PARAMETERS if k not in fixed]
    x0 = np.array([FIT_PARAMETERS[k][0] for k in names])
    lo = np.array([FIT_PARAMETERS[k][1] for k in names])
    hi = np.array([FIT_PARAMETERS[k][2] for k in names])
    scale = hi - lo

    def resid(z: np.ndarray) -> np.ndarray:
        prm, gpus = params_from({**fixed, **dict(zip(names, lo + z * scale, strict=True))})
        recs = [r for i, r in enumerate(evaluate(folder, params=prm, gpus=gpus))
                if "error_pct" in r and (keep is None or keep(i))]
        return np.array([math.log(r["predicted"] / r["published"]) for r in recs])

    res = least_squares(resid, (x0 - lo) / scale, bounds=(0.0, 1.0), loss="soft_l1",
                        f_scale=0.1, diff_step=1e-3)
    out: dict[str, Any] = {k: float(v) for k, v in zip(names, lo + res.x * scale,
                                                         strict=True)}
    out.update(fixed)
    out["rows"] = len(res.fun)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="the public data folder (default: ../shared/data)")
    ap.add_argument("--write", metavar="MD", help="write the table into this markdown file")
    ap.add_argument("--fit", action="store_true", help="refit the step parameters, print them")
    ap.add_argument("--rows", action="store_true", help="print every row's error")
    ap.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                    help="with --fit: hold a parameter at a value")
    ap.add_argument("--holdout", action="store_true",
                    help="with --fit: fit on the even rows, report the errors of the odd rows")
    args = ap.parse_args(argv)
    folder = data_dir(args.data)
    if folder is None:
        print(f"validate_steps: no public data folder with {RUNS} (give --data); skipped")
        return 0
    if args.fit:
        fixed = {}
        for item in args.fix:
            name, _, value = item.partition("=")
            fixed[name] = float(value)
        keep = (lambda i: i % 2 == 0) if args.holdout else None
        found = fit(folder, fixed=fixed, keep=keep)
        for k, v in found.items():
            print(f"{k}: {v}")
        if args.holdout:  # the odd rows, which the fit never saw
            prm, gpus = params_from(found)
            held = [r for i, r in enumerate(evaluate(folder, params=prm, gpus=gpus))
                    if i % 2 == 1]
            for t in summarize(held):
                print(f"held out: {t['family']:4} n={t['n']:3} median |err| "
                      f"{t['median_abs_pct']:5.1f}%  median {t['median_signed_pct']:+5.1f}%  "
                      f"p90 {t['p90_abs_pct']:5.1f}%")
        return 0
    records = evaluate(folder)
    table = summarize(records)
    if args.rows:
        for r in records:
            if "error_pct" in r:
                print(f"{r['gpu']:10} {r['model']:9} s{r['seq_len']:<6} n{r['n_gpus']:<4} "
                      f"pub {r['published']:>9.0f} pred {r['predicted']:>9.0f} "
                      f"err {r['error_pct']:+6.1f}% mem {r['memory_gib']:5.1f} GiB"
                      f"{'' if r['fits'] else ' INFEASIBLE'}")
            else:
                print(f"{r['gpu']:10} {r['model']:9} s{r['seq_len']:<6} refused: {r['refused']}")
    for t in table:
        print(f"{t['family']:4} n={t['n']:3} median |err| {t['median_abs_pct']:5.1f}%  "
              f"median {t['median_signed_pct']:+5.1f}%  p90 {t['p90_abs_pct']:5.1f}%  "
              f"infeasible {t['infeasible']}")
    if args.write:
        write_into(Path(args.write), render(records, table))
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
