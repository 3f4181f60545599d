#!/usr/bin/env python3
"""Issue #12's acceptance matrix: recommend_shape() for every budget, arch and GPU.

    python benchmarks/bench_recommend_matrix.py [--seed 0] [--gpus a100,h100,...]

For budgets 125M, 350M, 1.3B, 2.7B, 7B, 13B and 70B, arch gpt and llama, on a100, h100,
mi250x-gcd and mi300x (default constraints, seq 2048, micro-batch 1, tp 1), it checks that
every best shape has its head dim in {64, 128}, its aspect ratio hidden ÷ layers inside the
documented band, heads divisible by 8 from 1.3B up, and a training plan it fits; that the
same seed gives the same result (each search runs twice); and that each search takes under
5 s. It prints the best shape, its plan and the gain against each nearest published shape,
and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

BUDGETS = (125e6, 350e6, 1.3e9, 2.7e9, 7e9, 13e9, 70e9)
ARCHES = ("gpt", "llama")
GPUS = ("a100", "h100", "mi250x-gcd", "mi300x")
TIME_LIMIT_S = 5.0


def _label(p: float) -> str:
    return f"{p / 1e9:g}B" if p >= 1e9 else f"{p / 1e6:g}M"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gpus", default=",".join(GPUS))
    args = ap.parse_args()

    t0 = time.perf_counter()
    import shapewise as sw
    from shapewise.search.constraints import DECODER_ASPECT

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, shapewise {sw.__version__}; import "
          f"{time.perf_counter() - t0:.2f} s; seed {args.seed}; band h/L "
          f"{DECODER_ASPECT[0]:g}-{DECODER_ASPECT[1]:g}")
    failures: list[str] = []
    worst = 0.0
    for gpu in args.gpus.split(","):
        for arch in ARCHES:
            print(f"\n== {arch} on {gpu}")
            for p in BUDGETS:
                t = time.perf_counter()
                rec = sw.recommend_shape(params=p, gpu=gpu, arch=arch, seed=args.seed)
                dt = time.perf_counter() - t
                again = sw.recommend_shape(params=p, gpu=gpu, arch=arch, seed=args.seed)
                worst = max(worst, dt)
                b = rec.best
                # the objective's throughput: one micro-batch without the optimizer update
                # and the fixed per-step host time (recommend's shape_tokens_per_s)
                tps = rec.candidates[0].tokens_per_s
                aspect = b.hidden_size / b.num_hidden_layers
                name = f"{arch} {_label(p)} {gpu}"
                checks = {
                    "head dim in {64, 128}": b.head_dim in (64, 128),
                    "aspect in band": DECODER_ASPECT[0] <= aspect <= DECODER_ASPECT[1],
                    "heads % 8 from 1.3B": p < 1.3e9 or b.num_attention_heads % 8 == 0,
                    "fits a plan": rec.plan is not None and rec.plan.feasible,
                    "deterministic": rec.to_dict() == again.to_dict(),
                    f"< {TIME_LIMIT_S:g} s": dt < TIME_LIMIT_S,
                }
                bad = [k for k, ok in checks.items() if not ok]
                failures += [f"{name}: {k}" for k in bad]
                gains = "; ".join(f"{x.label} {x.gain_text()}" for x in rec.baselines) or "-"
                print(f"{_label(p):>5} h{b.hidden_size} a{b.num_attention_heads}x{b.head_dim} "
                      f"kv{b.kv_heads} L{b.num_hidden_layers} (h/L {aspect:.0f}) "
                      f"f{b.ffn_size} v{b.vocab_size} | {tps:,.0f} tok/s "
                      f"MFU {rec.estimate.mfu * tps / rec.estimate.tokens_per_s:.1%} | "
                      f"{dt:.2f} s {rec.method} "
                      f"{rec.evaluated} shapes | {'ok' if not bad else 'FAIL ' + ', '.join(bad)}")
                print(f"      plan: {rec.plan.text if rec.plan else '-'}")
                print(f"      vs published: {gains}")
    print(f"\nslowest search {worst:.2f} s (limit {TIME_LIMIT_S:g} s); "
          f"{len(failures)} failed check(s)")
    for f in failures:
        print(f"FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
