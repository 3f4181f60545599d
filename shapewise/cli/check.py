"""``shapewise check PATH...``: shape findings of model configs, with fixes and speedups.

Reads Hugging Face ``config.json`` files (or model folders), Megatron-LM argument JSON
files, nanoGPT ``.py`` config files (parsed, never executed), presets, and the JSON that
``recommend --json`` and ``estimate --json`` write (checked at the settings they state).
Exit codes: 0 when no finding reaches ``--fail-on`` (default: warning), 1 when one does, 2
when an input is unusable (each such file gets one line on stderr; the others are still
checked).

Never imports torch or optuna: this is the pre-commit path and must answer in well under a
second.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shapewise.cli._common import (
    SHAPE_INPUT_HELP,
    TRAINING_DTYPE_HELP,
    add_attention_backend_option,
    add_gpu_options,
    dtype_for,
    positive_int,
    print_json,
)
from shapewise.cli._plan_args import add_plan_options, plan_from_args

EXIT_OK, EXIT_FINDINGS, EXIT_INPUT = 0, 1, 2


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "check",
        help="check model configs for shapes that waste GPU throughput (fixes + speedups)",
        description=(
            "Check Hugging Face config.json files, Megatron-LM argument JSON files, "
            "nanoGPT .py configs, presets and shapewise's own JSON for shapes that waste "
            "throughput on a GPU: each finding names the rule, the fix and what it buys by "
            "the cost model. Exit 0: clean; 1: a finding reaches --fail-on; 2: unusable input."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help=SHAPE_INPUT_HELP)
    add_gpu_options(p, dtype_help=TRAINING_DTYPE_HELP,
                    gpu_help="GPU name or alias (see 'shapewise gpus'); default: h100-sxm, "
                    "named in the output (the command never detects: a pre-commit hook checks "
                    "for the GPU you train on, not the machine it runs on)")
    p.add_argument("--tp", type=positive_int("--tp"), default=None,
                   help="tensor-parallel size (default: the config's, else 1)")
    p.add_argument("--pp", "--pipeline-stages", dest="pipeline_stages",
                   type=positive_int("--pp"), default=None,
                   help="pipeline stages (default: the config's, else 1)")
    p.add_argument("--micro-batch", type=positive_int("--micro-batch"), default=None,
                   help="sequences per GPU per step (default: the config's, else 1)")
    p.add_argument("--seq-len", type=positive_int("--seq-len"), default=None,
                   help="tokens per sequence (default: the config's, else the model's "
                        "context up to 4096)")
    add_attention_backend_option(p)
    p.add_argument("--ep", type=positive_int("--ep"), default=None,
                   help="expert-parallel size of a mixture of experts (SW013, SW014; "
                   "default: the plan's, else 1)")
    # the plan-aware rules (SW016-SW019: stages, micro-batches, bubble, memory) need a plan
    add_plan_options(p, pp=False)
    p.add_argument("--recompute", choices=("none", "selective", "full"), default=None,
                   help="activation recompute of the plan (default: none)")
    p.add_argument("--fail-on", choices=("info", "warning", "error"), default="warning",
                   help="exit 1 when a finding is at least this severe (default: warning)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.set_defaults(func=run)


def _plan(args: argparse.Namespace) -> Any:
    """The Plan the plan flags describe, or None when none is given (then the config's own
    tp, stages and micro-batch are checked, as before). With a plan flag, --tp, --pp and
    --micro-batch not given are 1, as in ``shapewise estimate``."""
    if (all(v is None for v in (args.gpus, args.dp, args.global_batch, args.fsdp,
                                args.recompute))
            and args.virtual_stages == 1 and args.cp == 1 and args.zero == 0
            and not args.sequence_parallel):
        return None
    ns = argparse.Namespace(**vars(args))
    ns.tp, ns.pp = args.tp or 1, args.pipeline_stages or 1
    ns.micro_batch, ns.recompute = args.micro_batch or 1, args.recompute or "none"
    return plan_from_args(ns)


def _gpu(args: argparse.Namespace) -> tuple[Any, str]:
    from shapewise.check.api import resolve_gpu

    if args.profile or args.gpu:
        from shapewise.cli._common import resolve_gpu as from_args

        return from_args(args), ""
    return resolve_gpu(None, detect=False)  # a pre-commit hook checks for the GPU named


def _fmt_speed(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def _fmt_step(value: float | None) -> str:
    if value is None:
        return "-"
    pct = (value - 1) * 100
    return "±0%" if abs(pct) < 0.05 else f"{pct:+.1f}%"


def _print_report(rep: Any) -> None:
    from tabulate import tabulate

    from shapewise.model.loaded import SOURCE_NAMES

    settings = (f"{rep.gpu}, {rep.dtype}, tp {rep.tp}, micro-batch {rep.micro_batch}, "
                f"seq_len {rep.seq_len}"
                + (f", {rep.pipeline_stages} pipeline stages" if rep.pipeline_stages > 1 else ""))
    print(f"{rep.path}: {rep.name or '-'} ({SOURCE_NAMES.get(rep.source, rep.source)}) "
          f"on {settings}")
    for note in rep.notes:
        print(f"  note: {note}")
    if not rep.findings:
        print("  no findings")
        return
    rows = [[f.rule_id, f.rule, f.severity, f.field, f.value,
             "-" if f.fix is None else f.fix, _fmt_speed(f.gemm_speedup),
             _fmt_step(f.step_speedup), f.kernel or "-"] for f in rep.findings]
    table = tabulate(rows, headers=["id", "rule", "severity", "field", "value", "fix",
                                    "kernel speedup", "step speedup", "kernel"],
                     disable_numparse=True)
    print("\n".join("  " + line for line in table.splitlines()))
    for f in rep.findings:
        basis = {"time": "", "throughput": " (step speedup counted per FLOP)",
                 "tokens-per-gpu": " (step speedup counted in tokens/s per GPU)"}[f.basis]
        print(f"  {f.rule_id}: {f.message}" + (f"{basis}" if f.step_speedup else ""))
        if f.detail:
            print(f"         {f.detail}")


def run(args: argparse.Namespace) -> int:
    from shapewise.check.api import analyze
    from shapewise.check.rules import SEVERITIES

    gpu, gpu_note = _gpu(args)
    args.dtype = dtype_for(args, gpu)
    plan = _plan(args)  # InputError naming the flag: one line, exit 2 (cli/main.py)
    reports = []
    errors: list[dict[str, str]] = []
    for path in args.paths:
        try:
            reports.append(analyze(path, gpu=gpu, tp=args.tp, micro_batch=args.micro_batch,
                                   ep=args.ep,
                                   seq_len=args.seq_len, pipeline_stages=args.pipeline_stages,
                                   dtype=args.dtype, detect=False, plan=plan,
                                   attention_backend=args.attention_backend))
        except (ValueError, OSError) as exc:  # InputError is a ValueError
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not text.startswith(str(path)):
                text = f"{path}: {text}"
            errors.append({"path": str(path), "error": text})
            if not args.json:
                print(f"shapewise check: error: {text}", file=sys.stderr)

    threshold = SEVERITIES.index(args.fail_on)
    failing = sum(1 for r in reports for f in r.findings
                  if SEVERITIES.index(f.severity) >= threshold)
    code = EXIT_INPUT if errors else EXIT_FINDINGS if failing else EXIT_OK

    if args.json:
        print_json({"gpu": gpu.id, "gpu_note": gpu_note, "fail_on": args.fail_on,
                    "exit_code": code, "reports": [r.to_dict() for r in reports],
                    "errors": errors})
        for e in errors:
            print(f"shapewise check: error: {e['error']}", file=sys.stderr)
        return code

    if not reports:  # every input unreadable: the error lines on stderr say it all
        return code
    for i, rep in enumerate(reports):
        if i:
            print()
        _print_report(rep)
    counts = {s: sum(1 for r in reports for f in r.findings if f.severity == s)
              for s in reversed(SEVERITIES)}
    found = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
    files = len(reports) + len(errors)
    summary = (f"{files} file{'s' if files != 1 else ''} checked: {found or 'no findings'}"
               + (f", {len(errors)} unreadable" if errors else "")
               + f" (fails on {args.fail_on})")
    print()
    print(summary + (f"; {gpu_note}" if gpu_note else ""))
    return code
