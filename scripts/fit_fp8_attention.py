"""Fit the fp8 attention speedup over bf16 on cuDNN's own paired timings.

``cudnn_frontend_sdpa.csv`` times cuDNN SDPA on the same shapes in bf16 and in fp8
(per-tensor scaled e4m3) on H200, GB200 and GB300. The speedup of one over the other, per
direction, is the one parameter ``shapewise.recipe.FP8_ATTENTION_SPEEDUP`` holds: the median
over the pairs (robust to the few backward rows whose fp8 run collapsed). mxfp8 rows are
left out (a different recipe), as are the combined fwd_bwd rows.

    python scripts/fit_fp8_attention.py [DATA_FOLDER]

DATA_FOLDER defaults to ../shared/data; the script says so and exits 0 when it is absent.
"""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

FILE = "cudnn_frontend_sdpa.csv"
CUDNN = ("cudnn", "cudnn_sdpa", "cudnn_fe")


def _key(r: dict[str, str]) -> tuple[str, ...]:
    # the GPU's first word: 'H200 (inferred ...)' rows pair with each other only
    return (r["gpu"], r["batch"], r["seqlen_q"], r["seqlen_k"], r["n_heads"],
            r["n_kv_heads"], r["head_dim"], r["head_dim_v"], r["causal"], r["mode"])


def speedups(folder: Path) -> dict[str, list[float]]:
    """fp8 TFLOP/s over bf16 TFLOP/s of the same cuDNN problem, per direction."""
    with (folder / FILE).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    bf16 = {}
    for r in rows:
        if r["dtype"] == "bf16" and r["impl"] in CUDNN and r["tflops"]:
            bf16.setdefault(_key(r), float(r["tflops"]))
    out: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["dtype"] == "fp8" and r["mode"] in ("fwd", "bwd") and r["tflops"]:
            base = bf16.get(_key(r))
            if base:
                out[r["mode"]].append(float(r["tflops"]) / base)
    return out


def main(argv: list[str]) -> int:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    folder = Path(argv[1]) if len(argv) > 1 else default
    if not (folder / FILE).is_file():
        print(f"{folder / FILE}: not found; nothing to fit (public data absent)")
        return 0
    for mode, values in sorted(speedups(folder).items()):
        q1, med, q3 = statistics.quantiles(values, n=4)
        print(f"{mode}: {len(values)} pairs, median fp8/bf16 speedup {med:.2f} "
              f"(quartiles {q1:.2f}-{q3:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
