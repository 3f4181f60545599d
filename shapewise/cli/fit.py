"""``shapewise fit BENCH.json [--gpu NAME] --out PROFILE.json``: calibrate from measurements."""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from shapewise.cli._common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit",
        help="fit the cost model to a 'shapewise bench' file; write a calibrated profile",
        description="Fit the cost model's parameters to measured GEMM (and attention) times "
        "with scipy least squares; report in-sample and cross-validated errors by regime. "
        "Warns when the cross-validated median error passes 15%, its p90 50%, or more "
        "than 25% of the timings were left out (taken under contention), and says when the "
        "machine looked busy. Exit 0; 1 with --strict when a threshold is passed.",
    )
    p.add_argument("bench_file", metavar="BENCH.json", nargs="+",
                   help="output of 'shapewise bench' (several files of one device: e.g. "
                   "a bf16 and a tf32 sweep)")
    p.add_argument("--gpu", help="catalog GPU measured (default: from the file's provenance)")
    p.add_argument("--profile", metavar="FILE",
                   help="a profile file giving the measured GPU's datasheet facts "
                   "(instead of --gpu; default: none)")
    p.add_argument("--out", required=True, metavar="PROFILE.json", help="profile to write")
    p.add_argument("--id", dest="profile_id", help="id of the new profile (default: GPU-measured)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split into "
                   "cross-validation folds (default 0)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1, and write no profile, when the cross-validated error or the "
                   "share of timings left out passes its threshold (default: warn, write)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _rows(stats: dict) -> list[list]:
    rows = []
    for regime in ("all", "compute", "memory", "small"):
        if regime in stats and stats[regime]["n"]:
            s = stats[regime]
            rows.append([regime, s["n"], f"{s['median_abs_pct']:.1f}", f"{s['p90_abs_pct']:.1f}"])
    return rows


def run(args: argparse.Namespace) -> int:
    from shapewise.bench.fit import fit_profile

    gpu = args.gpu
    if args.profile:
        from shapewise.hardware.catalog import load_profile

        gpu = load_profile(args.profile)
    report = fit_profile(args.bench_file, gpu=gpu, out=args.out,
                         profile_id=args.profile_id, seed=args.seed, strict=args.strict)
    quality = report.quality
    assert quality is not None
    code = 1 if args.strict and not quality.ok else 0
    if args.json:
        print_json(report.to_dict())
        for line in _quality_lines(report):
            print(f"shapewise fit: {line}", file=sys.stderr)
        return code
    cal = report.profile.calibration
    assert cal is not None
    q = report.quality
    print(f"Fitted {report.gemm.n_points} of {q.total} GEMM timings from {report.bench_file} "
          + (f"-> {args.out}" if report.written else f"(NOT written to {args.out})")
          + f" (profile id '{report.profile.id}')")
    print(f"parameters fitted: {', '.join(report.gemm.fitted)}")
    effs = ", ".join(f"{d} {v:.3f}" for d, v in sorted(cal.gemm_efficiency.items()))
    print(f"main-loop efficiency: {effs}; launch {cal.launch_us:.2f} us; "
          f"k_fill {cal.k_fill:.0f}; bandwidth efficiency {cal.bandwidth_efficiency:.2f}")
    headers = ["regime", "points", "median abs err %", "p90 abs err %"]
    print("\nIn-sample:")
    print(tabulate(_rows(report.gemm.in_sample), headers=headers))
    print(f"\nCross-validated ({report.gemm.cross_validated['folds']}-fold, held-out points):")
    print(tabulate(_rows(report.gemm.cross_validated), headers=headers))
    for backend, prm in sorted(report.attention.items()):
        print(f"\nattention {backend} (fitted on its fused-kernel timings): "
              + ", ".join(f"{k} {v:.3f}" for k, v in sorted(prm.items())))
    lines = _quality_lines(report)
    if lines:
        print()
    for line in lines:
        print(line)
    return code


def _quality_lines(report) -> list[str]:
    """The fit-quality warnings, the busy-machine note and, under --strict, the verdict."""
    q = report.quality
    lines = [f"warning: {w}" for w in q.warnings]
    if q.busy:
        lines.append("warning: the machine looked busy while measuring: " + "; ".join(q.busy)
                     + " (measure again on an idle machine)")
    if not report.written and q.warnings:
        lines.append("the profile was NOT written (--strict); without --strict it would be")
    elif q.warnings:
        lines.append("the profile was written; treat its predictions with the errors above "
                     "(--strict refuses such a fit)")
    return lines
