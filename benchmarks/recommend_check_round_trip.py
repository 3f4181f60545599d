"""Does ``check`` agree with ``recommend``? The round trip of #12 item 4, over a grid.

For each arch, GPU and budget: ``recommend_shape`` at its defaults (or the settings given),
its ``--json`` document read back by ``load_shape``, and ``check`` of it at the settings it
was searched at. Prints one line per case with the best shape and every finding; the
target is no warning or error on any case. A few minutes for the full grid (56 searches).

    python benchmarks/recommend_check_round_trip.py [--arch gpt llama] [--gpu a100 h100]
        [--params 125M 7B] [--micro-batch N] [--seq-len N]

Exit status 1 when a case has a warning or an error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from shapewise.check.api import analyze
from shapewise.cli._common import parse_count
from shapewise.search.recommend import recommend_shape

BUDGETS = ("125M", "350M", "1.3B", "2.7B", "7B", "13B", "70B")  # #12's acceptance grid
GPUS = ("a100", "h100", "mi250x-gcd", "mi300x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="+", default=["gpt", "llama"])
    ap.add_argument("--gpu", nargs="+", default=list(GPUS))
    ap.add_argument("--params", nargs="+", default=list(BUDGETS))
    ap.add_argument("--micro-batch", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    args = ap.parse_args()
    settings = {k: v for k, v in (("micro_batch", args.micro_batch),
                                  ("seq_len", args.seq_len)) if v is not None}
    loud_cases = 0
    total = 0
    for arch in args.arch:
        for gpu in args.gpu:
            for budget in args.params:
                t0 = time.perf_counter()
                rec = recommend_shape(params=parse_count(budget), gpu=gpu, arch=arch,
                                      progress=False, **settings)
                doc = json.loads(json.dumps(rec.to_dict()))  # exactly what --json prints
                report = analyze(doc, gpu=gpu, detect=False)  # through load_shape
                s = rec.best
                loud = [f for f in report.findings if f.severity != "info"]
                loud_cases += bool(loud)
                total += 1
                found = "; ".join(f"{f.rule_id} {f.severity}: {f.summary()}"
                                  for f in report.findings) or "no findings"
                print(f"{arch:5} {gpu:10} {budget:>5}  h{s.hidden_size} a{s.num_attention_heads}"
                      f" d{s.head_dim} g{s.kv_heads} L{s.num_hidden_layers} f{s.ffn_size}"
                      f"  [{time.perf_counter() - t0:.1f} s]  {found}", flush=True)
    print(f"\n{total - loud_cases} of {total} recommended shapes check with no warning or "
          "error at the settings they were searched at")
    return 1 if loud_cases else 0


if __name__ == "__main__":
    sys.exit(main())
