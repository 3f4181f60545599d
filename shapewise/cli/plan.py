"""``shapewise plan CONFIG --gpu h100 --gpus 64 --global-batch 1024 --seq-len 4096``: the
feasible parallel plans of a model, fastest first, with where each one's time goes."""

from __future__ import annotations

import argparse
from typing import Any

from shapewise.cli._common import TRAINING_DTYPE_HELP, positive_int, print_json
from shapewise.errors import InputError


def add_plan_options(p: argparse.ArgumentParser) -> None:
    """The plan flags of ``estimate`` (all optional: the default is one GPU)."""
    p.add_argument("--gpus", type=positive_int("--gpus"), default=None,
                   help="GPUs in all (default: dp·tp·pp·cp); must equal that product")
    p.add_argument("--dp", type=positive_int("--dp"), default=None,
                   help="data-parallel ranks (default: what --gpus leaves after tp·pp·cp)")
    p.add_argument("--pp", type=positive_int("--pp"), default=1, help="pipeline stages")
    p.add_argument("--virtual-stages", type=positive_int("--virtual-stages"), default=1,
                   help="interleaved 1F1B: model chunks per pipeline rank")
    p.add_argument("--cp", type=positive_int("--cp"), default=1, help="context-parallel ranks")
    p.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=0,
                   help="ZeRO stage (1: optimizer states, 2: + gradients, 3: + weights)")
    p.add_argument("--fsdp", choices=("full", "hybrid"), default=None,
                   help="FSDP full shard, or hybrid (shard in a node, replicate across)")
    p.add_argument("--sequence-parallel", action="store_true",
                   help="Megatron sequence parallelism (needs --tp > 1)")
    p.add_argument("--global-batch", type=positive_int("--global-batch"), default=None,
                   help="sequences per optimizer step (sets gradient accumulation)")


def plan_from_args(args: argparse.Namespace) -> Any:
    from shapewise.plan import Plan

    tp, pp, cp = args.tp, args.pp, args.cp
    dp = args.dp
    if dp is None:
        if args.gpus is None:
            dp = 1
        elif args.gpus % (tp * pp * cp):
            raise InputError(f"--gpus: {args.gpus} is not a multiple of tp·pp·cp = "
                             f"{tp * pp * cp}")
        else:
            dp = args.gpus // (tp * pp * cp)
    rc = args.recompute
    plan = Plan(dp=dp, tp=tp, pp=pp, cp=cp, virtual_stages=args.virtual_stages,
                zero=args.zero, fsdp=args.fsdp, sequence_parallel=args.sequence_parallel,
                micro_batch=args.micro_batch, global_batch=args.global_batch, recompute=rc)
    if args.gpus is not None and plan.n_gpus != args.gpus:
        raise InputError(f"--gpus: {args.gpus}, but dp·tp·pp·cp = {dp}·{tp}·{pp}·{cp} = "
                         f"{plan.n_gpus}")
    return plan


def resolve_hardware(args: argparse.Namespace) -> Any:
    """--profile, else --gpu as a GPU or system name (e.g. 'h100', 'frontier')."""
    from shapewise.hardware.catalog import load_profile
    from shapewise.plan import _resolve_hardware

    if getattr(args, "profile", None):
        return load_profile(args.profile)
    if not getattr(args, "gpu", None):
        raise InputError("--gpu: required (a GPU or system name, or --profile FILE)")
    return _resolve_hardware(args.gpu)[1]


def gpu_of(hw: Any) -> Any:
    return getattr(hw, "gpu", hw)


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
    p.add_argument("--gpu", required=False, help="GPU or system name (see 'shapewise gpus')")
    p.add_argument("--profile", metavar="FILE", help="a GPU profile JSON file")
    p.add_argument("--dtype", default=None, help=TRAINING_DTYPE_HELP)
    p.add_argument("--gpus", type=positive_int("--gpus"), required=True, help="GPUs in all")
    p.add_argument("--global-batch", type=positive_int("--global-batch"), required=True,
                   help="sequences per optimizer step")
    p.add_argument("--seq-len", type=positive_int("--seq-len"), default=None,
                   help="tokens per sequence (default: the config's max positions)")
    p.add_argument("--top", type=positive_int("--top"), default=10, help="plans to list")
    p.add_argument("--json", action="store_true", help="print the plans as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from shapewise.cli.estimate import load_shape
    from shapewise.planner import plan_training

    shape = load_shape(args.config)
    hw = resolve_hardware(args)
    g = gpu_of(hw)
    dtype = args.dtype or ("bf16" if "bf16" in g.peak_tflops else "fp16")
    plans = plan_training(shape, gpu=hw, n_gpus=args.gpus, global_batch=args.global_batch,
                          seq_len=args.seq_len, dtype=dtype, top=args.top)
    if args.json:
        print_json({"gpu": g.id, "n_gpus": args.gpus, "global_batch": args.global_batch,
                    "seq_len": plans[0].seq_len, "dtype": dtype,
                    "plans": [_row_json(e) for e in plans]})
        return 0
    print(f"{shape.name or args.config} on {args.gpus} x {g.name} ({dtype}), global batch "
          f"{args.global_batch} x seq {plans[0].seq_len}: the {len(plans)} fastest plans "
          f"that fit\n")
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
