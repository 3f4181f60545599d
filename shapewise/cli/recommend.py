"""``shapewise recommend --params 2.7B --gpu a100``: the fastest shape for a budget."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from shapewise.cli._common import (
    TRAINING_DTYPE_HELP,
    add_gpu_options,
    dtype_for,
    format_count,
    parse_count,
    positive_int,
    print_json,
    resolve_gpu,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend",
        help="search the transformer shape that trains fastest for a parameter budget",
        description="Optuna search over hidden size, heads, KV heads, layers, FFN size and "
        "vocabulary padding. Objective: predicted training tokens/s per GPU × params / "
        "budget (throughput at equal model size, so the smallest shape the tolerance allows "
        "cannot win by being small); scores within 0.5% rank the shape keeping more "
        "multiple-of-64 rules first.",
    )
    p.add_argument("--params", required=True,
                   help="parameter budget, a count such as 2.7B, 350M or 7e9 (required)")
    add_gpu_options(p, dtype_help=TRAINING_DTYPE_HELP)
    p.add_argument("--arch", choices=("gpt", "llama", "vit"), default="gpt",
                   help="model family: gpt (learned positions, GELU MLP), llama (rotary, "
                   "SwiGLU, GQA) or vit (default gpt)")
    p.add_argument("--seq-len", type=positive_int("--seq-len"), default=None,
                   help="tokens per sequence; default 4096, the shared default sequence "
                   "length (a ViT's follow from --image-size and --patch-size)")
    p.add_argument("--vocab-size", type=positive_int("--vocab-size"), default=50257,
                   help="tokenizer vocabulary in tokens, before padding (default 50257, GPT-2's)")
    p.add_argument("--image-size", type=positive_int("--image-size"), default=224,
                   help="ViT: image side in pixels (default 224)")
    p.add_argument("--patch-size", type=positive_int("--patch-size"), default=16,
                   help="ViT: patch side in pixels (default 16)")
    p.add_argument("--tp", type=positive_int("--tp"), default=1,
                   help="tensor-parallel size, GPUs per model replica (default 1)")
    p.add_argument("--micro-batch", type=positive_int("--micro-batch"), default=None,
                   help="sequences (images for a ViT) per GPU per step (default: 1; a ViT "
                   "128, DeiT's recipe)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="allowed deviation from the budget, a fraction (default 0.05 = ±5%%)")
    p.add_argument("--n-trials", type=positive_int("--n-trials"), default=None,
                   help="Optuna trials of the search (default 200; the output states the "
                   "count)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the search; the same seed repeats the result "
                   "(default 0)")
    p.add_argument("--top", type=positive_int("--top"), default=5,
                   help="candidates shown (default 5)")
    p.add_argument("--recompute", action="store_true",
                   help="full activation recompute (default: off)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _row(label: str, c) -> list:
    s, e = c.shape, c.estimate
    return [label, s.hidden_size, s.num_attention_heads, s.head_dim, s.kv_heads,
            s.num_hidden_layers, s.ffn_size, s.vocab_size if s.arch != "vit" else "-",
            f"{c.params / 1e9:.3f}", f"{e.tokens_per_s:,.0f}", f"{e.mfu:.1%}",
            f"{e.memory_bytes / 2**30:.1f}", c.reason]


def run(args: argparse.Namespace) -> int:
    from shapewise.model.shape import default_micro_batch, default_seq_len
    from shapewise.search.recommend import recommend_shape

    params = parse_count(args.params, field="--params")
    seq_note = None
    if args.seq_len is None:  # the rule every command shares (no model yet: the default)
        args.seq_len, seq_note = default_seq_len(None)
    mb_note = None
    if args.micro_batch is None:  # per architecture; a ViT's is said
        args.micro_batch, mb_note = default_micro_batch(arch=args.arch)
        mb_note = mb_note if args.arch == "vit" else None
    if args.gpu or args.profile:
        args.dtype = dtype_for(args, resolve_gpu(args))
    rec = recommend_shape(
        params=params, gpu=args.gpu, profile=args.profile, seq_len=args.seq_len,
        vocab_size=args.vocab_size, arch=args.arch, tp=args.tp, micro_batch=args.micro_batch,
        tolerance=args.tolerance, n_trials=args.n_trials, seed=args.seed, dtype=args.dtype,
        recompute=args.recompute, top_k=max(args.top, 1), progress=not args.json,
        image_size=args.image_size, patch_size=args.patch_size,
    )
    if args.json:
        doc = rec.to_dict()
        if seq_note and args.arch != "vit":
            doc["notes"] = [seq_note, *doc.get("notes", [])]
        if mb_note:
            doc["notes"] = [mb_note, *doc.get("notes", [])]
        print_json(doc)
        return 0
    rows = [_row("best" if i == 0 else f"#{i + 1}", c)
            for i, c in enumerate(rec.candidates[: args.top])]
    if rec.baseline is not None:
        rows.append(_row("baseline", rec.baseline))
    print(f"Budget {format_count(params)} params ±{args.tolerance:.0%} on {rec.gpu} "
          f"({args.dtype}, seq {args.seq_len if args.arch != 'vit' else rec.best.seq_len}, "
          f"micro-batch {args.micro_batch}, tp {args.tp}); {rec.n_trials} trials, "
          f"seed {rec.seed}")
    print(tabulate(rows, headers=[
        "", "hidden", "heads", "head dim", "KV heads", "layers", "FFN", "vocab (padded)",
        "params (B)", "tokens/s/GPU", "MFU", "memory/GPU (GiB)", "reason"]))
    if rec.gain is not None:
        print(f"\nbest vs baseline: {rec.gain:+.1%} throughput at equal parameter count")
    if seq_note and args.arch != "vit":
        print(f"note: {seq_note}")
    if mb_note:
        print(f"note: {mb_note}")
    for note in rec.notes:
        print(f"note: {note}")
    return 0
