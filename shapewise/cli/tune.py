"""``shapewise tune``: measure the analytic search's finalists on real hardware.

Start one per GPU, on one node or many, with the same ``--storage`` and ``--study``: they
share the trials through Optuna's storage (docs/tuning.md)::

    shapewise tune --params 7B --gpu h100 --arch llama --seq-len 4096 --micro-batch 2 \\
        --device cuda:0 --storage shapewise-tune.log --study llama7b
"""

from __future__ import annotations

import argparse
import re

from shapewise.cli._common import (
    add_counts,
    add_gpu_options,
    format_count,
    parse_count,
    print_json,
)
from shapewise.errors import InputError

#: keyword of tune() -> its option here, so errors name what the user typed
_FLAGS = {
    "params": "--params", "gpu": "--gpu", "profile": "--profile", "device": "--device",
    "arch": "--arch", "seq_len": "--seq-len", "micro_batch": "--micro-batch", "tp": "--tp",
    "dtype": "--dtype", "vocab_size": "--vocab-size", "image_size": "--image-size",
    "patch_size": "--patch-size", "storage": "--storage", "n_trials": "--n-trials",
    "top_k": "--top-k", "search_trials": "--search-trials", "seed": "--seed",
    "repeats": "--repeats", "prune_margin": "--prune-margin", "heartbeat_s": "--heartbeat",
    "record": "--record",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="measure the top analytic candidates on the device (an Optuna study that many "
        "workers share)",
        description="Stage one: the analytic search proposes the top-K shapes. Stage two: "
        "each trial times one candidate's real transformer block and head, forward and "
        "backward, on --device. Run one worker per GPU with the same --storage and --study; "
        "the report ranks the candidates as measured beside the prediction, with their "
        "Spearman rank correlation. Options other than --device, --storage and --study are "
        "needed by the first worker only (later ones take the study's).",
    )
    p.add_argument("--params", metavar="N", help="parameter budget, a count such as 7B or 350M; "
                   "no default: the first worker gives it, later ones take the study's")
    add_gpu_options(
        p, gpu_help="GPU the analytic search predicts for (see 'shapewise gpus'); no "
        "default: the first worker gives --gpu or --profile",
        profile_help="a fitted profile instead of --gpu (default: none)",
        dtype_help="math data type of the prediction and of GPU measurements (default bf16; "
        "the CPU measures in fp32)")
    p.add_argument("--device", help="where to measure: cuda:N (ROCm too) or cpu "
                   "(default: cuda:0 when a GPU is visible, else cpu)")
    p.add_argument("--arch", choices=("gpt", "llama", "vit"), help="model family (default gpt)")
    add_counts(
        p, ("--seq-len", "tokens per sequence (default 4096, the rule every command shares; "
            "a ViT's follow from --image-size and --patch-size)"),
        ("--micro-batch", "sequences per GPU per step (default 1)"),
        ("--tp", "tensor-parallel size: one rank's shard is measured (default 1)"),
        ("--vocab-size", "tokenizer vocabulary before padding (default 50257)"),
        ("--image-size", "ViT: image side in pixels (default 224)"),
        ("--patch-size", "ViT: patch side in pixels (default 16)"))
    p.add_argument("--storage", metavar="URL", help="where the study lives: a journal file "
                   "(*.log or journal:///PATH; one node), sqlite:///FILE (one node) or "
                   "postgresql://USER@HOST/DB (a cluster); default shapewise-tune.log")
    p.add_argument("--study", required=True, metavar="NAME", help="study name; workers "
                   "with the same --storage and --study share its trials")
    add_counts(
        p, ("--top-k", "finalists of the analytic search to measure (default 8)"),
        ("--n-trials", "trials in the study, all workers together (default --top-k: one per "
         "finalist)"),
        ("--search-trials", "trials of the analytic search (default 240)"))
    p.add_argument("--seed", type=int, help="seed of the analytic search (default 0)")
    add_counts(p, ("--repeats", "timing repeats per trial, one intermediate value each "
                   "(default 5 on a GPU, 3 on the CPU)"))
    p.add_argument("--prune-margin", type=float, default=0.5, metavar="F",
                   help="prune a trial when, after 2 repeats, even its best is under (1 - F) x "
                   "the best finished trial (default 0.5)")
    p.add_argument("--heartbeat", type=float, default=10.0, metavar="S",
                   help="seconds between heartbeats of a running trial; a trial silent for "
                   "3 of them is failed and retried (default 10)")
    p.add_argument("--no-wait", action="store_true", help="report as soon as this worker "
                   "has nothing left to claim, without waiting for the others")
    p.add_argument("--record", metavar="FILE", help="write the predicted and measured times "
                   "with their provenance to this JSON file (calibration data; default: none)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _flagged(message: str) -> str:
    """'seq_len: ...' -> '--seq-len: ...'."""
    m = re.match(r"(\w+):", message)
    if m and m.group(1) in _FLAGS:
        return _FLAGS[m.group(1)] + message[m.end() - 1:]
    return message


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    # here, not at the top: shapewise.tuning imports optuna, which `shapewise --help` and the
    # other commands need not load
    from shapewise.tuning import tune
    from shapewise.tuning.report import rank_verdict

    try:
        report = tune(
            study=args.study, params=parse_count(args.params) if args.params else None,
            gpu=args.gpu, profile=args.profile, device=args.device, arch=args.arch,
            seq_len=args.seq_len, micro_batch=args.micro_batch, tp=args.tp, dtype=args.dtype,
            vocab_size=args.vocab_size, image_size=args.image_size,
            patch_size=args.patch_size, storage=args.storage, n_trials=args.n_trials,
            top_k=args.top_k, search_trials=args.search_trials, seed=args.seed,
            repeats=args.repeats, prune_margin=args.prune_margin, heartbeat_s=args.heartbeat,
            wait=not args.no_wait, record=args.record, progress=not args.quiet)
    except InputError as exc:
        raise InputError(_flagged(str(exc))) from exc
    if args.json:
        print_json(report.to_dict())
        return 0
    cfg = report.config
    tokens = (f"image {cfg['image_size']}, patch {cfg['patch_size']}" if cfg["arch"] == "vit"
              else f"seq {cfg['seq_len']}")
    print(f"Study '{report.study}' in {report.storage}: {format_count(cfg['params'])} params, "
          f"{cfg['arch']}, {tokens}, micro-batch {cfg['micro_batch']}, "
          f"tp {cfg['tp']}; predicted for {cfg['gpu']} ({cfg['dtype']})")
    st = report.trial_states
    print(f"Measured on {report.device_name} ({report.device}, {report.measure_dtype}); "
          f"trials: {st.get('complete', 0)} complete, {st.get('pruned', 0)} pruned, "
          f"{st.get('fail', 0)} failed; this worker ran {len(report.this_worker)} "
          f"in {report.elapsed_s:.0f} s")
    rows = []
    for c in report.candidates:
        s = c.shape
        rows.append([
            c.measured_rank or "-", c.predicted_rank, s.hidden_size, s.num_attention_heads,
            s.head_dim, s.kv_heads, s.num_hidden_layers, s.ffn_size,
            s.vocab_size if s.vocab_size is not None else "-", f"{c.params / 1e6:.1f}",
            f"{c.predicted_tokens_per_s:,.0f}", _fmt(c.measured_tokens_per_s, ",.0f"),
            _fmt(c.measured_layer_s * 1e3 if c.measured_layer_s else None, ".3g"),
            _fmt(c.error * 100 if c.error is not None else None, "+.0f"), c.state,
        ])
    headers = ["rank", "pred rank", "h", "heads", "head dim", "kv", "L", "FFN", "vocab",
               "params (M)", "pred tok/s/GPU", "meas tok/s/GPU", "block ms", "step err %",
               "state"]
    print()
    print(tabulate(rows, headers=headers, disable_numparse=True, stralign="right"))
    print()
    if report.rho is None:
        print("Spearman rank correlation: n/a (fewer than 3 finalists measured)")
    else:
        n = sum(c.measured_score is not None for c in report.candidates)
        verdict = rank_verdict(report.rho, n)
        print(f"Spearman rank correlation, predicted vs measured: {report.rho:+.2f} ({verdict})")
    for note in report.notes:
        print(f"note: {note}")
    for w in report.warnings:
        print(f"warning: {w}")
    if args.record:
        print(f"Predicted and measured times written to {args.record}")
    return 0
