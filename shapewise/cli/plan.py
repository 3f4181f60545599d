"""``shapewise plan CONFIG --gpu h100 --gpus 64 --global-batch 1024 --seq-len 4096``: the
feasible parallel plans of a model, fastest first, with where each one's time goes."""

from __future__ import annotations

import argparse
from typing import Any

from shapewise.cli._common import (
    MODEL_SEQ_LEN_HELP,
    TRAINING_DTYPE_HELP,
    add_attention_backend_option,
    add_counts,
    add_gpu_options,
    positive_int,
    print_json,
)
from shapewise.cli._plan_args import hardware_and_dtype


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="rank the parallel plans (dp/tp/pp/cp, ZeRO/FSDP, micro-batch, recompute) of a "
             "model on N GPUs",
        description="CONFIG is a Hugging Face config.json, a ModelShape JSON, or a preset "
        "name. Every plan that fits in memory is priced (compute, exposed communication, "
        "pipeline bubble, optimizer, overheads) and the fastest are listed.",
    )
    p.add_argument("config", metavar="CONFIG", help="config.json path or preset name")
    add_gpu_options(p, dtype_help=TRAINING_DTYPE_HELP,
                    gpu_help="GPU or system name (see 'shapewise gpus'); no default: give "
                    "--gpu or --profile",
                    profile_help="a GPU profile JSON file (default: none, the catalog's of "
                    "--gpu)")
    p.add_argument("--gpus", type=positive_int("--gpus"), required=True, help="GPUs in all")
    p.add_argument("--global-batch", type=positive_int("--global-batch"), required=True,
                   help="sequences per optimizer step")
    add_counts(p, ("--seq-len", MODEL_SEQ_LEN_HELP))
    add_attention_backend_option(p)
    add_counts(p, ("--top", "plans to list (default 10)", 10))
    p.add_argument("--json", action="store_true", help="print the plans as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from shapewise.cli._common import load_config
    from shapewise.planner import plan_training

    loaded, seq_note = load_config(args)
    shape = loaded.shape
    hw, g = hardware_and_dtype(args)
    dtype = args.dtype
    plans = plan_training(shape, gpu=hw, n_gpus=args.gpus, global_batch=args.global_batch,
                          seq_len=args.seq_len, dtype=dtype, top=args.top,
                          attention_backend=args.attention_backend
                          or loaded.attention_backend)
    if args.json:
        print_json({"gpu": g.id, "n_gpus": args.gpus, "global_batch": args.global_batch,
                    "seq_len": plans[0].seq_len, "dtype": dtype,
                    "plans": [_row_json(e) for e in plans]})
        return 0
    print(f"{shape.name or args.config} on {args.gpus} x {g.name} ({dtype}), global batch "
          f"{args.global_batch} x seq {plans[0].seq_len}: the {len(plans)} fastest plans "
          f"that fit")
    if seq_note:
        print(f"note: {seq_note}")
    print()
    rows = [[e.plan.label(), f"{e.tokens_per_s:,.0f}", f"{e.mfu:.1%}",
             f"{e.memory_bytes / 2**30:.1f}", f"{e.bubble_fraction:.1%}",
             f"{e.exposed_comm_fraction:.1%}"] for e in plans]
    print(tabulate(rows, headers=["plan", "tokens/s/GPU", "MFU", "memory/GPU (GiB)",
                                  "bubble %", "exposed comm %"]))
    return 0


def _row_json(e: Any) -> dict[str, Any]:
    return {"plan": e.plan.to_dict(), "label": e.plan.label(), "tokens_per_s": e.tokens_per_s,
            "mfu": e.mfu, "memory_bytes": e.memory_bytes,
            "stage_memory": list(e.stage_memory), "bubble_fraction": e.bubble_fraction,
            "exposed_comm_fraction": e.exposed_comm_fraction, "step_time_s": e.step_time_s,
            "categories": dict(e.categories), "exposed_comm": dict(e.exposed_comm)}
