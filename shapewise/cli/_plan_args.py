"""The plan options of ``shapewise estimate``, the hardware of ``--gpu`` (a GPU or a
system) and the dtype, shared by ``estimate``, ``plan`` and ``recommend`` (which builds its
target here)."""

from __future__ import annotations

import argparse
from typing import Any

from shapewise.cli._common import add_counts, gpu_of, resolve_hardware
from shapewise.errors import InputError


def add_plan_options(p: argparse.ArgumentParser, *, pp: bool = True) -> None:
    """The plan flags of ``estimate`` (all optional: the default is one GPU). ``pp=False``
    leaves out ``--pp`` for a command that has its own (``check``'s ``--pipeline-stages``)."""
    add_counts(p, ("--gpus", "GPUs in all (default: dp·tp·pp·cp); must equal that product"),
               ("--dp", "data-parallel ranks (default: what --gpus leaves after tp·pp·cp)"),
               *([("--pp", "pipeline stages (default 1)", 1)] if pp else []),
               ("--virtual-stages", "interleaved 1F1B: model chunks per pipeline rank "
                "(default 1)", 1),
               ("--cp", "context-parallel ranks (default 1)", 1))
    p.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=0,
                   help="ZeRO stage (1: optimizer states, 2: + gradients, 3: + weights; "
                   "default 0)")
    p.add_argument("--fsdp", choices=("full", "hybrid"), default=None,
                   help="FSDP full shard, or hybrid (shard in a node, replicate across); "
                   "default: none")
    p.add_argument("--sequence-parallel", action="store_true",
                   help="Megatron sequence parallelism (needs --tp > 1)")
    add_counts(p, ("--global-batch", "sequences per optimizer step (sets gradient "
                   "accumulation; default: dp x micro-batch, no accumulation)"))


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


def hardware_and_dtype(args: argparse.Namespace) -> tuple[Any, Any]:
    """The hardware ``--gpu``/``--profile`` name (:func:`resolve_hardware`), and
    ``args.dtype`` filled: ``--dtype``, else the first of bf16, fp16, tf32, fp32 it has."""
    from shapewise.cli._common import dtype_for

    hw = resolve_hardware(args)
    args.dtype = dtype_for(args, gpu_of(hw))
    return hw, gpu_of(hw)


def target_from_args(args: argparse.Namespace) -> Any:
    """The :class:`shapewise.Target` of a command that searches shapes (``recommend``),
    built once from its flags; ``args.dtype`` filled as :func:`hardware_and_dtype` does."""
    from shapewise.plan import make_target

    hw, _ = hardware_and_dtype(args)
    return make_target(gpu=hw, dtype=args.dtype, seq_len=args.seq_len,
                       micro_batch=args.micro_batch, tp=args.tp, recompute=args.recompute,
                       n_gpus=args.n_gpus, global_batch=args.global_batch, recipe=args.recipe)
