"""Speed of ``plan_training``: Llama-2-7B on 64 H100, every plan of the grid priced.

Target (#10): under 2 s per call. Runs ``plan_training`` ``--repeat`` times in this process
(a fresh pricer per call; parameter counts stay cached per shape) and prints the best and the
median wall-clock time, how many plans it priced and which one won.

    python benchmarks/bench_plan_training.py [--repeat 5] [--gpus 64] [--global-batch 1024]

Measured figures depend on the machine: the output starts with how it was made.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

TARGET_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--global-batch", type=int, default=1024)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--gpu", default="h100")
    args = parser.parse_args()

    from shapewise import __version__
    from shapewise.model.presets import get_preset
    from shapewise.planner import candidate_plans, plan_training

    shape = get_preset("llama-2-7b")
    print(f"shapewise {__version__}, Python {platform.python_version()}, "
          f"{platform.machine()} {platform.processor() or ''}".rstrip())
    n_grid = len(candidate_plans(shape, n_gpus=args.gpus, global_batch=args.global_batch,
                                 seq_len=args.seq_len))
    times, result = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = plan_training(shape, gpu=args.gpu, n_gpus=args.gpus,
                               global_batch=args.global_batch, seq_len=args.seq_len)
        times.append(time.perf_counter() - t0)
    best = result[0]
    print(f"llama-2-7b on {args.gpus} x {args.gpu}, global batch {args.global_batch} x "
          f"{args.seq_len}: {n_grid} plans in the grid, {len(result)} fit")
    print(f"fastest: {best.plan.label()}: {best.tokens_per_s:,.0f} tokens/s/GPU, "
          f"MFU {best.mfu:.1%}")
    print(f"plan_training: best {min(times):.2f} s, median {statistics.median(times):.2f} s "
          f"over {args.repeat} runs (target < {TARGET_S:g} s)")
    return 0 if min(times) < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
