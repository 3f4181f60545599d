"""The decode section of docs/validation.md (written by scripts/validate_public.py).

The decode rows of ``vidur_a100_attention.csv`` against the shipped split-KV decode model
(``shapewise/cost/attention_decode.py``): in-sample errors by batch range, the held-out
errors stored by ``scripts/fit_decode.py``, the same rows priced as ``attention_time`` prices
them, and the price the tiled model gave before.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import public_data
from fit_decode import BATCH_RANGES, GPU_ID

from shapewise import get_gpu
from shapewise.cost.attention_decode import explain_decode
from shapewise.cost.defaults import calibration_of
from shapewise.cost.fit import AttentionObservation, error_stats
from shapewise.hardware.catalog import GPU

DBEGIN = "<!-- decode:begin (scripts/validate_public.py writes between these marks) -->"
DEND = "<!-- decode:end -->"
#: the decode model's target (issue #11, decode brief): median absolute error per batch range
DECODE_MEDIAN_TARGET = 10.0


def tiled_forward(o: AttentionObservation, gpu: GPU) -> float:
    """What the tiled FlashAttention model (the fused path of ``explain_attention``) prices
    ``o`` at: the price short queries had before the decode path."""
    from shapewise.cost.attention import (
        BACKENDS,
        _kernel_dim,
        fused_params,
        fused_time,
        kernel_tiles,
    )

    be = BACKENDS[o.backend]
    prm, _ = fused_params(gpu, o.backend, o.dtype, False)
    kd = _kernel_dim(be, o.head_dim)
    return fused_time(gpu, o.dtype, prm, batch=o.batch, heads=o.heads, kv_heads=o.kv_heads,
                      seq_len=o.seq_len, seq_len_kv=o.seq_len_kv, head_dim_k=kd,
                      head_dim_vk=kd, head_dim=o.head_dim, head_dim_v=o.head_dim_v,
                      causal=o.causal, window=None,
                      tiles=kernel_tiles(be, gpu, kd, False), backward=False)[0]


def render_decode(folder: Path, *, trend: dict | None = None) -> str | None:
    """The decode section: vidur's decode rows against the shipped split-KV decode model.

    ``trend``: validate_public's vidur_trend of the prefill rows, quoted unchanged."""
    obs = list(public_data.read_vidur_decode(folder))
    if not obs:
        return None
    gpu = get_gpu(GPU_ID)
    prov = calibration_of(gpu).provenance.get("attention_decode") or {}
    cap = prov.get("kv_capacity", max(o.seq_len_kv for o in obs))
    meas = np.array([o.time_s for o in obs])
    batch = np.array([o.batch for o in obs])

    def pred(capacity: int | None) -> np.ndarray:
        return np.array([explain_decode(
            batch=o.batch, heads=o.heads, kv_heads=o.kv_heads, seq_len=o.seq_len,
            keys=o.seq_len_kv, head_dim=o.head_dim, head_dim_v=o.head_dim_v, gpu=gpu,
            dtype=o.dtype, kv_capacity=capacity).time_s for o in obs])

    shipped, own = pred(cap), pred(None)
    tiled = np.array([tiled_forward(o, gpu) for o in obs[:: max(1, len(obs) // 500)]])
    cv = prov.get("cross_validated", {})
    lines = [
        DBEGIN,
        public_data.generated(public_data.VALIDATE_COMMAND)
        + f"the {len(obs)} decode rows of "
        f"`vidur_a100_attention.csv` ({public_data.SOURCE_COMMITS['vidur_a100_attention.csv']}"
        "; A100, fp16, 32 q / 4 kv heads, head dim 128, one query token against a cache of "
        "32-4032 keys, batch 1-128; Kineto time of the FLASH_ATTENTION op). The model "
        "(`shapewise/cost/attention_decode.py`) was fitted on these rows by "
        f"`python scripts/fit_decode.py --write` ({prov.get('date', 'not fitted')}); "
        "\"in-sample\": the shipped A100 parameters; \"held out\": 5-fold cross-validation "
        "over whole batch sizes (each batch size predicted by a fit that never saw it). "
        f"The split heuristic sees a block table of {cap} keys, the file's largest cache "
        "(see `scripts/fit_decode.py` kv_capacity).",
        "",
        f"Target: median absolute error ≤ {DECODE_MEDIAN_TARGET:.0f}%.",
        "",
        "| batch | rows | median abs err % | p90 % | held-out median % | held-out p90 % "
        "| target | table = own cache: median % |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    groups = [("all", np.ones(len(obs), bool))] + [
        (f"batch {lo}-{hi}", (batch >= lo) & (batch <= hi)) for lo, hi in BATCH_RANGES]
    for name, m in groups:
        st = error_stats(shipped[m], meas[m])
        c = cv.get(name, {})
        ok = "met" if st["median_abs_pct"] <= DECODE_MEDIAN_TARGET else "**missed**"
        lines.append(
            f"| {name.removeprefix('batch ')} | {st['n']} | {st['median_abs_pct']:.1f} | "
            f"{st['p90_abs_pct']:.1f} | {c.get('median_abs_pct', float('nan')):.1f} | "
            f"{c.get('p90_abs_pct', float('nan')):.1f} | {ok} | "
            f"{error_stats(own[m], meas[m])['median_abs_pct']:.1f} |")
    sub = meas[:: max(1, len(obs) // 500)]
    lines += [
        "",
        "Last column: the same rows priced as `attention_time` prices a call (the split "
        "heuristic sized on each row's own cache, as a block table no wider than the "
        "sequence gives), with the same parameters. The tiled FlashAttention-2 model that priced "
        "these before (one query row in a 128-row tile per head, compute-bound) gives "
        f"{float(np.median(tiled / sub)):.1f}× the measured time (median over "
        f"{len(sub)} rows).",
    ]
    if trend:
        lines += ["", f"The same file's {trend['n']} prefill rows are unchanged: a trend check "
                  f"of the tiled model only ({trend['median_ratio']:.2f}× the op time, "
                  f"median abs error {trend['raw_median_abs_pct']:.0f}%; trend "
                  f"followed to {trend['trend_median_abs_pct']:.1f}% median, "
                  f"{trend['trend_p90_abs_pct']:.1f}% p90; the attention section above)."]
    lines.append(DEND)
    return "\n".join(lines)
