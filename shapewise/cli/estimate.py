"""``shapewise estimate CONFIG.json --gpu h100``: one training step, op by op."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tabulate import tabulate

from shapewise.cli._common import (
    MICRO_BATCH_HELP,
    MODEL_SEQ_LEN_HELP,
    SHAPE_INPUT_HELP,
    TRAINING_DTYPE_HELP,
    add_attention_backend_option,
    add_counts,
    add_gpu_options,
    load_config,
    positive_int,
    print_json,
)
from shapewise.cli._plan_args import add_plan_options, hardware_and_dtype, plan_from_args
from shapewise.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate",
        help="predict one training step of a model config, with a per-op breakdown",
        description=f"CONFIG is {SHAPE_INPUT_HELP}.",
    )
    p.add_argument("config", metavar="CONFIG", help="config file or folder, shapewise JSON, "
                   "or preset name")
    add_gpu_options(p, dtype_help=TRAINING_DTYPE_HELP)
    add_counts(p, ("--micro-batch", MICRO_BATCH_HELP), ("--seq-len", MODEL_SEQ_LEN_HELP),
               ("--tp", "tensor-parallel size, GPUs per model replica (default 1)", 1))
    p.add_argument("--recompute", nargs="?", const="full", default="none",
                   choices=("none", "selective", "full"),
                   help="activation recompute: none, selective or full (bare --recompute: "
                        "full; default none)")
    add_plan_options(p)
    add_attention_backend_option(p)
    p.add_argument("--recipe", default=None,
                   help="fp8 recipe for the layers' GEMMs: te-delayed, te-current, mxfp8 "
                   "(Blackwell), blockwise (DeepSeek 128x128), mi300x (e4m3fnuz); --dtype "
                   "stays the storage type (bf16); default: none, GEMMs in --dtype")
    p.add_argument("--fp8-attention", action="store_true",
                   help="with --recipe: attention in fp8 too (cuDNN fp8 attention)")
    p.add_argument("--ep", type=positive_int("--ep"), default=1,
                   help="expert-parallel size (mixture of experts: experts / ep per GPU), "
                   "out of the data-parallel ranks (alone: --dp EP); default 1")
    p.add_argument("--capacity-factor", type=_at_least_one("--capacity-factor"), default=None,
                   help="mixture of experts: tokens per expert capped at this x the mean "
                   "(default: dropless)")
    p.add_argument("--imbalance", type=_at_least_one("--imbalance"), default=1.0,
                   help="mixture of experts, dropless: the busiest expert-parallel rank's "
                   "tokens over the mean (default 1.0)")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(func=run)


def _at_least_one(field: str):
    """argparse type: a finite number >= 1, errors naming ``field``."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value >= 1 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{field} must be a number >= 1, got {text!r}")
        return value

    return convert


def run(args: argparse.Namespace) -> int:
    from shapewise.model.params import count_params
    from shapewise.model.run_defaults import default_micro_batch
    from shapewise.step import estimate

    loaded, seq_note = load_config(args)
    shape = loaded.shape
    if args.micro_batch is None:  # per architecture; a ViT's is said
        args.micro_batch, why = default_micro_batch(shape)
        if shape.arch == "vit":
            seq_note = f"{seq_note}\n{why}" if seq_note else why
    hw, _ = hardware_and_dtype(args)
    recipe = None
    if args.recipe is not None:
        from shapewise.recipe import get_recipe
        recipe = get_recipe(args.recipe, fp8_attention=args.fp8_attention)
    elif args.fp8_attention:
        raise InputError("--fp8-attention: needs --recipe (the fp8 recipe of the GEMMs)")
    plan = plan_from_args(args)
    if args.ep > 1:  # as estimate(ep=): with no data parallelism given, dp = ep GPUs
        dp = args.ep if plan.dp * plan.cp == 1 else plan.dp
        plan = dataclasses.replace(plan, dp=dp, ep=args.ep)
    est = estimate(shape, gpu=hw, seq_len=args.seq_len, dtype=args.dtype, plan=plan,
                   recipe=recipe, capacity_factor=args.capacity_factor,
                   imbalance=args.imbalance,
                   attention_backend=args.attention_backend or loaded.attention_backend)
    if args.json:
        doc = est.to_dict()
        doc["notes"] = [*seq_note.splitlines(), *doc["notes"]] if seq_note else doc["notes"]
        print_json(doc)
        return 0
    from shapewise.model.moe import describe

    n = count_params(shape)
    name = shape.name or Path(args.config).stem
    if shape.is_moe:
        print(f"{name}: mixture of experts, {describe(shape)}; "
              f"{count_params(shape, active=True) / 1e9:.3f}B active params per token")
    print(f"{name}: {n / 1e9:.3f}B params, h={shape.hidden_size}, "
          f"heads={shape.num_attention_heads} "
          f"(head dim {shape.head_dim}, KV {shape.kv_heads}), layers={shape.num_hidden_layers}, "
          f"FFN={shape.ffn_size}" + (f", vocab={shape.vocab_size}" if shape.vocab_size else "")
          + (f"; {shape.window_layers} of {shape.num_hidden_layers} layers attend to a "
             f"{shape.sliding_window}-key window" if shape.window_layers else ""))
    extra = (f", recipe {recipe.name}" + (" + fp8 attention" if recipe.fp8_attention else "")
             if recipe is not None else "")
    print(f"on {est.gpu} ({est.dtype}) x {est.n_gpus}, seq {est.seq_len}, plan "
          f"{est.plan.label()}{extra}")
    for line in seq_note.splitlines() if seq_note else []:
        print(f"note: {line}")
    print()
    rows = [[r["op"], r["kind"], r["launches"], f"{r['time_s'] * 1e3:.3f}",
             f"{r['share']:.1%}", f"{r['tflops']:.0f}" if r["tflops"] else "-"]
            for r in est.by_op()]
    print(tabulate(rows, headers=["op", "kind", "launches/step", "time/step (ms)", "share",
                                  "TFLOP/s"]))
    mem = est.memory
    print(f"\nstep {est.step_time_s * 1e3:.2f} ms | {est.tokens_per_s:,.0f} tokens/s/GPU | "
          f"{est.model_tflops:.0f} model TFLOP/s/GPU | MFU {est.mfu:.1%} | "
          f"memory {est.memory_bytes / 2**30:.1f} GiB/GPU "
          f"(weights {mem.get('weights', 0) / 2**30:.1f}, "
          f"activations {mem.get('activations', 0) / 2**30:.1f})"
          + ("" if est.fits else " DOES NOT FIT"))
    parts = ", ".join(f"{k} {v / est.step_time_s:.1%}" for k, v in est.categories.items()
                      if v > 0)
    print(f"step time: {parts}")
    if est.exposed_comm:
        print("exposed communication: " + ", ".join(
            f"{k} {v / est.step_time_s:.1%}" for k, v in est.exposed_comm.items()))
    for note in est.notes:
        print(f"note: {note}")
    return 0
