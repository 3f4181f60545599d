#!/usr/bin/env python3
"""Time recommend_shape() on this machine (issue #3 target: <= 10 s on a 2-core CPU; #10
target: the shape and plan co-search for 7B on 64 H100 with a global batch, < 10 s).

    python benchmarks/bench_recommend.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    import shapewise as sw

    t_import = time.perf_counter() - t0
    cases = [
        ("2.7B GPT on A100 (issue #3)", dict(params=2.7e9, gpu="a100")),
        ("7B Llama on H100", dict(params=6.74e9, gpu="h100", arch="llama", seq_len=4096,
                                  vocab_size=32000)),
        ("1.3B GPT on H100, tp=4", dict(params=1.3e9, gpu="h100", tp=4)),
        ("7B Llama, 64 H100 (#10)", dict(params=7e9, gpu="h100", arch="llama", seq_len=4096,
                                         n_gpus=64, global_batch=1024)),
    ]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, shapewise {sw.__version__}; "
          f"import shapewise {t_import:.2f} s")
    for label, kw in cases:
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            rec = sw.recommend_shape(**kw)
            times.append(time.perf_counter() - t)
        b = rec.best
        gain = (f"vs {rec.baselines[0].label} {rec.baselines[0].gain_text()}"
                if rec.baselines else "no published shape near the budget")
        print(f"{label:<30} median {statistics.median(times):5.2f} s (min {min(times):.2f}, "
              f"{rec.method}, {rec.evaluated} shapes): h={b.hidden_size} "
              f"heads={b.num_attention_heads} d={b.head_dim} L={b.num_hidden_layers} "
              f"v={b.vocab_size} {gain}")


if __name__ == "__main__":
    main()
