"""``shapewise report --gpu NAME``: what the GPU rewards, in numbers.

Peaks and ridge points, alignment per dtype, the tile/wave arithmetic with the sizes that
fill whole waves, and a sweep of predicted TFLOP/s against N (optionally plotted).
"""

from __future__ import annotations

import argparse
from typing import Any

from tabulate import tabulate

from shapewise.cli._common import (
    add_gpu_options,
    dtype_for,
    positive_int,
    print_json,
    resolve_gpu,
)
from shapewise.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="peaks, ridge point, alignment, tile/wave arithmetic and an N sweep for a GPU",
        description="Report what a GPU's GEMMs reward: alignment, tiles, waves, and a sweep "
        "of predicted TFLOP/s over N for an M x N x K GEMM.",
    )
    add_gpu_options(p)
    p.add_argument("--m", type=positive_int("--m"), default=4096,
                   help="rows of the swept GEMM, e.g. micro-batch x sequence (default 4096)")
    p.add_argument("--k", type=positive_int("--k"), default=4096,
                   help="reduction dim of the swept GEMM, e.g. hidden size (default 4096)")
    p.add_argument("--n-min", type=positive_int("--n-min"), default=1024)
    p.add_argument("--n-max", type=positive_int("--n-max"), default=16384)
    p.add_argument("--n-step", type=positive_int("--n-step"), default=64)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="plot the N sweep (needs matplotlib)")
    p.set_defaults(func=run)


def build_report(gpu: Any, dtype: str, m: int, k: int, n_min: int, n_max: int,
                 n_step: int) -> dict[str, Any]:
    from shapewise.cost.defaults import calibration_of
    from shapewise.cost.gemm import explain_gemm, gemm_time
    from shapewise.hardware.catalog import DTYPE_BYTES, canonical_dtype

    dtype = canonical_dtype(dtype, field_name="--dtype")
    gpu.peak_flops(dtype)  # errors name the dtype if the GPU lacks it
    if n_min > n_max:
        raise InputError(f"--n-min: {n_min} is above --n-max {n_max}")
    if (n_max - n_min) // n_step > 20000:
        raise InputError("--n-step: the sweep would have more than 20000 points")
    cal = calibration_of(gpu)
    origin = dict(cal.provenance.get("efficiency_origin", {}))
    peaks = []
    for d, tflops in sorted(gpu.peak_tflops.items(), key=lambda kv: -kv[1]):
        peaks.append({
            "dtype": d, "dense_tflops": tflops,
            "ridge_flop_per_byte": gpu.ridge_point(d),
            "align_16B_elements": max(1, 16 // DTYPE_BYTES[d]),
            "align_elements": gpu.alignment_elements(d),
            "efficiency": cal.efficiency(d),
            "efficiency_from": origin.get(d, "fitted" if cal.status == "fitted"
                                          else "spec-derived default"),
        })
    slots = gpu.sm_count * gpu.ctas_per_sm
    tiles = []
    for bm, bn in gpu.gemm_tiles:
        rows = -(-m // bm)
        # N sizes (multiples of BN) whose tile grid is a whole number of waves
        fill = [n for n in range(bn, n_max + 1, bn) if (rows * (n // bn)) % slots == 0][:6]
        tiles.append({"tile": [bm, bn], "tiles_per_wave": slots,
                      "m_tile_rows": rows, "n_filling_whole_waves": fill})
    sweep = []
    n = n_min
    while n <= n_max:
        t = gemm_time(m, n, k, gpu=gpu, dtype=dtype)
        sweep.append({"n": n, "time_us": t * 1e6, "tflops": 2.0 * m * n * k / t / 1e12})
        n += n_step
    best = max(sweep, key=lambda r: r["tflops"])
    worst = min(sweep, key=lambda r: r["tflops"])
    big = explain_gemm(8192, 8192, 8192, gpu=gpu, dtype=dtype, suggest=False)
    return {
        "gpu": gpu.id, "name": gpu.name, "arch": gpu.arch_code, "sm_count": gpu.sm_count,
        "dtype": dtype, "bandwidth_tbs": gpu.memory_bandwidth_tbs,
        "calibration": cal.status,
        "calibration_provenance": dict(cal.provenance),
        "peaks": peaks,
        "wave_slots": slots,
        "tiles": tiles,
        "sweep": {"m": m, "k": k, "points": sweep, "best": best, "worst": worst},
        "square_8192": {"tflops": big.tflops, "pct_of_peak": big.pct_of_peak,
                        "tile": list(big.tile), "waves": big.waves},
        # what a long training run sustains of those rates (power, thermal; #10)
        "sustained_clock": gpu.sustained_clock,
        "sustained_clock_source": gpu.sustained_clock_source,
    }


def _print(rep: dict[str, Any]) -> None:
    print(f"{rep['name']} ({rep['arch']}, {rep['sm_count']} SMs/CUs, "
          f"{rep['bandwidth_tbs']:g} TB/s); calibration: "
          + ("fitted (see profile provenance)" if rep["calibration"] == "fitted"
             else "spec-derived defaults (no measurement of this GPU)"))
    print()
    print(tabulate(
        [[p["dtype"], f"{p['dense_tflops']:g}", f"{p['ridge_flop_per_byte']:.0f}",
          p["align_16B_elements"], p["align_elements"], f"{p['efficiency']:.2f}",
          p["efficiency_from"]] for p in rep["peaks"]],
        headers=["dtype", "dense peak TFLOP/s", "ridge FLOP/byte", "16B align (elems)",
                 "full align (elems)", "GEMM efficiency", "efficiency from"]))
    sw = rep["sweep"]
    print(f"\nTile/wave arithmetic ({rep['wave_slots']} CTA slots per wave), "
          f"for M = {sw['m']} rows:")
    print(tabulate(
        [[f"{t['tile'][0]}x{t['tile'][1]}", t["m_tile_rows"],
          ", ".join(map(str, t["n_filling_whole_waves"])) or "-"] for t in rep["tiles"]],
        headers=["CTA tile", "tile rows in M", "N that fill whole waves"]))
    sq = rep["square_8192"]
    print(f"\n{rep['dtype']} 8192^3: {sq['tflops']:.0f} TFLOP/s predicted "
          f"({sq['pct_of_peak']:.0f}% of dense peak, tile {sq['tile'][0]}x{sq['tile'][1]}, "
          f"{sq['waves']} waves)")
    print(f"N sweep {sw['points'][0]['n']}..{sw['points'][-1]['n']} at M={sw['m']}, "
          f"K={sw['k']}: best N={sw['best']['n']} at {sw['best']['tflops']:.0f} TFLOP/s, "
          f"worst N={sw['worst']['n']} at {sw['worst']['tflops']:.0f} TFLOP/s")
    if rep.get("sustained_clock"):
        print(f"In a long training run: {rep['sustained_clock']:.0%} of these math rates "
              f"(sustained clock; {rep['sustained_clock_source']})")
    else:
        print("In a long training run: no sustained-clock factor known for this GPU "
              "(burst rates are used)")


def _plot(rep: dict[str, Any], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot: needs matplotlib (pip install 'shapewise[plot]')") from None
    sw = rep["sweep"]
    xs = [p["n"] for p in sw["points"]]
    ys = [p["tflops"] for p in sw["points"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(xs, ys, lw=1)
    peak = next(p["dense_tflops"] for p in rep["peaks"] if p["dtype"] == rep["dtype"])
    ax.axhline(peak, color="grey", ls="--", lw=0.8, label=f"dense peak {peak:g}")
    ax.set_xlabel("N (columns)")
    ax.set_ylabel("predicted TFLOP/s")
    ax.set_title(f"{rep['name']}: {rep['dtype']} GEMM M={sw['m']}, K={sw['k']} "
                 f"({rep['calibration']} calibration)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    gpu = resolve_gpu(args)
    args.dtype = dtype_for(args, gpu)
    rep = build_report(gpu, args.dtype, args.m, args.k, args.n_min, args.n_max, args.n_step)
    if args.plot:
        _plot(rep, args.plot)
    if args.json:
        print_json(rep)
    else:
        _print(rep)
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0
