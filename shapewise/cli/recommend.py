"""``shapewise recommend --params 2.7B --gpu a100``: the fastest shape for a budget, within
the constraints a practitioner trains under."""

from __future__ import annotations

import argparse
from typing import Any

from tabulate import tabulate

from shapewise.cli._common import (
    MICRO_BATCH_HELP,
    TRAINING_DTYPE_HELP,
    add_counts,
    add_gpu_options,
    format_count,
    parse_count,
    positive_int,
    print_json,
)
from shapewise.cli._plan_args import target_from_args
from shapewise.errors import InputError
from shapewise.model.params import count_params


def _int_list(field: str):
    def convert(text: str) -> tuple[int, ...]:
        try:
            vals = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{field}: expected comma-separated integers, got {text!r}") from None
        if not vals or min(vals) < 1:
            raise argparse.ArgumentTypeError(f"{field}: expected positive integers, got {text!r}")
        return vals
    return convert


def _aspect(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--aspect: expected MIN:MAX (e.g. 64:128), got {text!r}") from None
    return lo, hi


def _ratio(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ffn-ratio: expected a number, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend",
        help="search the transformer shape that trains fastest for a parameter budget",
        description="Search hidden size, heads, KV heads, layers and vocabulary padding for "
        "the highest predicted training tokens/s per GPU × params / budget (throughput at "
        "equal model size), within the constraints below. The objective always prefers "
        "wider and shallower shapes; depth is a quality decision, so it is bounded by the "
        "aspect band. The result is compared with the nearest published shapes (and "
        "--baseline); gains below the model's documented error for the GPU are marked "
        "'within model error'. docs/user-guide.md explains each default and its source.",
    )
    p.add_argument("--params", required=True,
                   help="parameter budget, a count such as 2.7B, 350M or 7e9 (required)")
    add_gpu_options(p, dtype_help=TRAINING_DTYPE_HELP)
    p.add_argument("--arch", choices=("gpt", "llama", "vit", "moe"), default="gpt",
                   help="model family: gpt (learned positions, GELU MLP), llama (rotary, "
                   "SwiGLU, GQA), vit, or moe (a Llama-style mixture of experts: --params "
                   "is the total, --active-params the budget per token) (default gpt)")
    p.add_argument("--active-params", default=None,
                   help="--arch moe: parameters each token uses, a count such as 13B "
                   "(required with --arch moe; default: none)")
    p.add_argument("--recipe", default=None,
                   help="fp8 recipe every shape is priced under, as on estimate: te-delayed, "
                   "te-current, mxfp8 (Blackwell), blockwise or mi300x (default: none, all "
                   "GEMMs in --dtype)")
    add_counts(p, ("--ep", "--arch moe: expert-parallel size the step is priced at; expert "
                   "counts it divides (default 1)", 1),
               ("--seq-len", "tokens per sequence; default 4096, the shared default sequence "
                "length (a ViT's follow from --image-size and --patch-size)"))
    voc = p.add_mutually_exclusive_group()
    voc.add_argument("--vocab-size", type=positive_int("--vocab-size"), default=None,
                     help="your tokenizer's vocabulary in tokens, padded by the search "
                     "(default: --tokenizer's)")
    voc.add_argument("--tokenizer", default=None,
                     help="a tokenizer name instead of --vocab-size: gpt2 50257, llama-2 "
                     "32000, llama-3 128256, mistral 32000, qwen2.5 151936, olmo 50280, opt "
                     "50272, mistral-nemo 131072, gemma 256000 (default: gpt2 for gpt, "
                     "llama-2 for llama; the output says which)")
    add_counts(p, ("--image-size", "ViT: image side in pixels (default 224)", 224),
               ("--patch-size", "ViT: patch side in pixels (default 16)", 16),
               ("--tp", "tensor-parallel size the step is priced at (default 1)", 1),
               ("--micro-batch", MICRO_BATCH_HELP))
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="allowed deviation from the budget, a fraction (default 0.05 = ±5%%)")
    c = p.add_argument_group("constraints (defaults documented in docs/user-guide.md)")
    c.add_argument("--aspect", type=_aspect, default=None, metavar="MIN:MAX",
                   help="hidden ÷ layers band (default 64:128 for decoders, the published "
                   "families' range; 32:64 for ViT)")
    c.add_argument("--layers", type=positive_int("--layers"), default=None,
                   help="pin the depth instead of the aspect band (default: none, the band)")
    c.add_argument("--head-dims", type=_int_list("--head-dims"), default=None,
                   metavar="D,D", help="head dims allowed (default 64,128; 256 allowed)")
    c.add_argument("--max-tp", type=positive_int("--max-tp"), default=None,
                   help="largest tensor-parallel degree you plan: heads and KV heads "
                   "divisible by it (default 1 under 100M params, 4 under 1B, 8 from 1B)")
    c.add_argument("--pipeline-stages", type=positive_int("--pipeline-stages"), default=None,
                   help="layers divisible by it (default 1 under 40B params, 4 from 40B)")
    c.add_argument("--kv-ratios", type=_int_list("--kv-ratios"), default=None, metavar="R,R",
                   help="heads ÷ KV heads searched (default 1,2,4,8 for llama)")
    c.add_argument("--ffn-ratio", type=_ratio, default=None,
                   help="FFN ÷ hidden before rounding (default 4 for gpt/vit, 8/3 for llama)")
    c.add_argument("--ffn-multiple", type=positive_int("--ffn-multiple"), default=None,
                   help="SwiGLU FFN rounded up to a multiple of this (default 256)")
    add_counts(p, ("--n-gpus", "with --global-batch: rank shapes under their fastest training "
                   "plan on this many GPUs, keeping only those that fit one (default: none, "
                   "one GPU)"),
               ("--global-batch", "sequences per optimizer step (with --n-gpus; default: "
                "none)"))
    p.add_argument("--baseline", metavar="CONFIG", default=None,
                   help="your own shape to compare with (config.json path or preset name), "
                   "besides the nearest published shapes (default: none)")
    p.add_argument("--n-trials", type=positive_int("--n-trials"), default=None,
                   help="Optuna trials when the space is too large to price whole "
                   "(default: sized by the search; the output states the count)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the search; the same seed repeats the result "
                   "(default 0)")
    p.add_argument("--top", type=positive_int("--top"), default=5,
                   help="distinct candidates shown (default 5)")
    p.add_argument("--recompute", action="store_true",
                   help="full activation recompute (default: off)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _row(label: str, c, note: str = "") -> list:
    s, e = c.shape, c.estimate
    return [label, s.hidden_size, s.num_attention_heads, s.head_dim, s.kv_heads,
            s.num_hidden_layers, f"{s.hidden_size / s.num_hidden_layers:.0f}", s.ffn_size,
            s.vocab_size if s.arch != "vit" else "-", f"{c.params / 1e9:.3f}",
            f"{c.tokens_per_s:,.0f}", f"{e.mfu * c.tokens_per_s / e.tokens_per_s:.1%}", note]


def constraints_from(args: argparse.Namespace):
    """The Constraints the CLI options ask for (None options keep their defaults)."""
    from shapewise.search.constraints import DEFAULT_HEAD_DIMS, Constraints

    return Constraints(
        aspect=args.aspect, layers=args.layers,
        head_dims=args.head_dims or DEFAULT_HEAD_DIMS, max_tp=args.max_tp,
        pipeline_stages=args.pipeline_stages, kv_ratios=args.kv_ratios,
        ffn_ratio=args.ffn_ratio, ffn_multiple=args.ffn_multiple,
        vocab_size=args.vocab_size, tokenizer=args.tokenizer)


def run(args: argparse.Namespace) -> int:
    from shapewise.model.load import load_shape
    from shapewise.model.run_defaults import default_micro_batch, default_seq_len
    from shapewise.search.recommend import recommend_shape

    params = parse_count(args.params, field="--params")
    notes = []  # the defaults taken, said in the output
    if args.seq_len is None:  # the rule every command shares (no model yet: the default)
        args.seq_len, why = default_seq_len(None)
        if args.arch != "vit":
            notes.append(why)
    if args.micro_batch is None:  # per architecture; a ViT's is said
        args.micro_batch, why = default_micro_batch(arch=args.arch)
        if args.arch == "vit":
            notes.append(why)
    # the target, built once here; without --gpu/--profile recommend_shape names the field
    target = target_from_args(args) if args.gpu or args.profile else None
    if not 0 < args.tolerance < 1:
        raise InputError(f"--tolerance: must be a fraction in (0, 1), got {args.tolerance}")
    if args.arch == "moe":
        return _run_moe(args, params, notes, target)
    if args.active_params is not None:
        raise InputError("--active-params: only with --arch moe")
    if args.ep != 1:
        raise InputError("--ep: only with --arch moe")
    own = load_shape(args.baseline).shape if args.baseline else None
    rec = recommend_shape(
        params=params, target=target, arch=args.arch, tolerance=args.tolerance,
        n_trials=args.n_trials, seed=args.seed, top_k=max(args.top, 1),
        progress=not args.json, image_size=args.image_size, patch_size=args.patch_size,
        constraints=constraints_from(args), baseline=own,
    )
    if args.json:
        doc = rec.to_dict()
        doc["notes"] = [*notes, *doc.get("notes", [])]
        print_json(doc)
        return 0
    rows = [_row("best" if i == 0 else f"#{i + 1}", c,
                 f"{c.score / rec.candidates[0].score - 1:+.1%}" if i else "")
            for i, c in enumerate(rec.candidates[: args.top])]
    for b in rec.baselines:
        rows.append(_row(b.label, b.candidate, f"best {b.gain_text()}"))
    how = (f"all {rec.evaluated} shapes of the space priced" if rec.method == "exhaustive"
           else f"{rec.n_trials} Optuna trials, seed {rec.seed}, {rec.evaluated} shapes")
    print(f"Budget {format_count(params)} params ±{args.tolerance:.0%} on {rec.gpu} "
          f"({args.dtype}{', recipe ' + args.recipe if args.recipe else ''}, "
          f"seq {args.seq_len if args.arch != 'vit' else rec.best.seq_len}, "
          f"micro-batch {args.micro_batch}, tp {args.tp}); {how}")
    print(tabulate(rows, headers=[
        "", "hidden", "heads", "head dim", "KV heads", "layers", "h/L", "FFN",
        "vocab (padded)", "params (B)", "tokens/s/GPU", "MFU", "vs best"],
        disable_numparse=True))
    best = rec.candidates[0]
    if rec.inputs.get("n_gpus"):
        print("tokens/s/GPU and MFU: the whole optimizer step under each shape's fastest plan")
    else:
        print("tokens/s/GPU and MFU: one micro-batch's forward and backward, without the "
              "optimizer update and the fixed host time per optimizer step (amortized over "
              "the global batch; --n-gpus and --global-batch price whole steps)")
    print(f"\nwhy: {best.reason}")
    if best.plan is not None:
        print(f"plan: {best.plan.text}")
    for b in rec.baselines:
        err = " (within model error)" if b.within_error else ""
        why = f" [{'; '.join(b.caveats)}]" if b.caveats else ""
        print(f"best vs {b.label}: {b.gain:+.1%} throughput at equal parameter count{err}{why}")
    for note in [*notes, *rec.notes]:
        if not note.startswith("plan: "):  # printed above
            print(f"note: {note}")
    return 0


def _run_moe(args: argparse.Namespace, params: float, notes: list[str], target: Any) -> int:
    """--arch moe: the MoE grid (experts, top-k, tile-aligned expert FFN) for two budgets."""
    from shapewise.search.recommend import recommend_shape

    if args.active_params is None:
        raise InputError("--active-params: required with --arch moe (the parameters each "
                         "token uses; --params is the total)")
    active = parse_count(args.active_params, field="--active-params")
    if active >= params:
        raise InputError(f"--active-params: {format_count(active)} must be below --params "
                         f"{format_count(params)}, the total")
    for flag, given in (("--baseline", args.baseline), ("--n-gpus", args.n_gpus),
                        ("--global-batch", args.global_batch), ("--n-trials", args.n_trials)):
        if given is not None:
            raise InputError(f"{flag}: not supported with --arch moe")
    rec = recommend_shape(
        arch="moe", params=params, active_params=active, target=target,
        tolerance=args.tolerance, top_k=max(args.top, 1), ep=args.ep,
        constraints=constraints_from(args))
    if args.json:
        doc = rec.to_dict()
        doc["notes"] = [*notes, *doc.get("notes", [])]
        print_json(doc)
        return 0
    rows = []
    for i, c in enumerate(rec.candidates[: args.top]):
        s, e = c.shape, c.estimate
        rows.append(["best" if i == 0 else f"#{i + 1}", s.hidden_size, s.num_attention_heads,
                     s.kv_heads, s.num_hidden_layers, s.num_experts, s.num_experts_per_tok,
                     s.moe_intermediate_size, f"{c.params / 1e9:.2f}",
                     f"{count_params(s, active=True) / 1e9:.2f}", f"{c.tokens_per_s:,.0f}",
                     f"{e.mfu:.1%}",
                     f"{c.score / rec.candidates[0].score - 1:+.1%}" if i else ""])
    print(f"Budget {format_count(params)} params, {format_count(active)} active, "
          f"±{args.tolerance:.0%} on {rec.gpu} ({args.dtype}"
          f"{', recipe ' + args.recipe if args.recipe else ''}, seq {args.seq_len}, "
          f"micro-batch {args.micro_batch}, ep {args.ep}); {rec.evaluated} shapes of the MoE "
          "grid priced")
    print(tabulate(rows, headers=["", "hidden", "heads", "KV heads", "layers", "experts",
                                  "top-k", "expert FFN", "total (B)", "active (B)",
                                  "tokens/s/GPU", "MFU", "vs best"], disable_numparse=True))
    print(f"\nwhy: {rec.candidates[0].reason}")
    for note in [*notes, *rec.notes]:
        print(f"note: {note}")
    return 0
