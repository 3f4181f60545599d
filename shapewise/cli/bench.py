"""``shapewise bench``: time kernels on this machine and write the measurements to a file.

Examples::

    shapewise bench --device cuda:0 --full --budget-seconds 360 --out h100.json
    shapewise bench --device cpu --quick --out cpu.json
    shapewise bench --device cuda --full --resume --out h100.json   # after an interruption

``--plan tiny`` (hidden) runs a dozen small kernels, for tests.
"""

from __future__ import annotations

import argparse
import sys

from shapewise.bench.runner import run_bench
from shapewise.bench.store import load_document
from shapewise.cli._common import positive_seconds
from shapewise.errors import InputError
from shapewise.hardware.catalog import load_profile


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time GEMM, attention and memory-bound kernels here; write them to a JSON file",
        description=(
            "Time the kernels a cost-model fit needs (GEMM alignment, wave and size sweeps, "
            "attention backends, norms and activations) on one device, saving each result "
            "as it comes: an interrupted run loses at most the kernel in flight, and "
            "--resume continues it. The file starts with how it was made (command, device, "
            "driver, versions)."
        ),
    )
    p.add_argument("--device", default=None,
                   help="cuda, cuda:N or cpu (ROCm GPUs are 'cuda' too; default: cuda:0 when "
                        "torch sees a GPU, else cpu)")
    p.add_argument("--dtype", default=None,
                   help="fp32, fp16 or bf16 (default: bf16 on a GPU, fp32 on the CPU)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="a short sweep (default; the CPU in under 2 minutes)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="the whole sweep (about 5 minutes on an H100)")
    mode.add_argument("--plan", dest="mode", choices=("tiny",), help=argparse.SUPPRESS)
    p.add_argument("--profile", metavar="FILE",
                        help="a profile whose SM count sets the wave scans (default: the "
                        "device's own count)")
    p.add_argument("--budget-seconds", type=positive_seconds("--budget-seconds"), default=None,
                   metavar="N",
                   help="stop cleanly between kernels after N seconds of measuring (at least "
                   "one kernel per run; resume later); default: no limit, the whole sweep")
    p.add_argument("--resume", action="store_true",
                   help="continue the file given by --out, skipping what it already has")
    p.add_argument("--out", required=True, metavar="FILE.json", help="the results file")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True,
                     help="show progress on stderr even when it is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                     help="no progress output")
    p.set_defaults(func=run, mode="quick", progress=None)


def run(args: argparse.Namespace) -> int:
    if not args.out.strip():
        raise InputError("--out: empty path")
    sm_count = None
    if args.profile:  # wave scans at this profile's SM count instead of the device's
        sm_count = load_profile(args.profile).sm_count
    path = run_bench(device=args.device, dtype=args.dtype, mode=args.mode,
                     budget_seconds=args.budget_seconds, out=args.out, resume=args.resume,
                     progress=args.progress, sm_count=sm_count)
    doc = load_document(path)
    recs = doc["measurements"]
    ok = sum(r.get("status") == "ok" for r in recs)
    skipped = len(recs) - ok
    run_info = doc["run"]
    left = int(run_info.get("planned", len(recs))) - len(recs)
    elapsed = (run_info.get("sessions") or [{}])[-1].get("elapsed_s")
    took = f" in {elapsed:g} s" if isinstance(elapsed, int | float) else ""
    print(f"shapewise bench: {ok} measured, {skipped} skipped, {max(left, 0)} left on "
          f"{run_info.get('device_name')} ({run_info.get('dtype')}){took}; wrote {path}",
          file=sys.stdout)
    if skipped:
        reasons: dict[str, int] = {}
        for r in recs:
            if r.get("status") != "ok":
                why = str(r.get("reason", "")).split(":", 1)[0]
                reasons[why] = reasons.get(why, 0) + 1
        print("  skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())))
    noisy = run_info.get("noisy") or []
    if noisy:
        print(f"  warning: {len(noisy)} measurements spread over 25% of their median (was "
              "the machine busy?); listed under run.noisy in the file", file=sys.stderr)
    return 0
