"""``shapewise report --gpu NAME``: what the GPU rewards, in numbers.

Peaks and ridge points, alignment per dtype, the tile/wave arithmetic with the sizes that
fill whole waves, and a sweep of predicted TFLOP/s against N (optionally plotted).
"""

from __future__ import annotations

import argparse
import itertools
import json
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
from shapewise.model.run_defaults import DEFAULT_SEQ_LEN

#: the default N sweep: every N from 1024 to 8192, wide enough for several waves of the
#: largest tiles at M = 4096, fine enough to show every alignment class
DEFAULT_N_MIN, DEFAULT_N_MAX = 1024, 8192


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="peaks, ridge point, alignment, tile/wave arithmetic and an N sweep for a GPU",
        description="Report what a GPU's GEMMs reward: alignment, tiles, waves, and a sweep "
        "of predicted TFLOP/s over N for an M x N x K GEMM.",
    )
    add_gpu_options(p)
    p.add_argument("--m", type=positive_int("--m"), default=None,
                   help="rows of the swept GEMM, in tokens: micro-batch x sequence length "
                   f"(default {DEFAULT_SEQ_LEN}: micro-batch 1 x the default sequence length)")
    p.add_argument("--k", type=positive_int("--k"), default=4096,
                   help="reduction dimension of the swept GEMM, in elements, e.g. the hidden "
                   "size (default 4096)")
    p.add_argument("--n-min", type=positive_int("--n-min"), default=DEFAULT_N_MIN,
                   help=f"first N of the sweep, in elements (default {DEFAULT_N_MIN})")
    p.add_argument("--n-max", type=positive_int("--n-max"), default=DEFAULT_N_MAX,
                   help=f"last N of the sweep, in elements (default {DEFAULT_N_MAX})")
    p.add_argument("--n-step", type=positive_int("--n-step"), default=1,
                   help="N step of the sweep, in elements (default 1: every N, so the "
                   "misaligned sizes show; 64 keeps only aligned ones)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw the N sweep to this PNG (needs matplotlib; default: none)")
    p.set_defaults(func=run)


def build_report(gpu: Any, dtype: str, m: int, k: int, n_min: int, n_max: int,
                 n_step: int) -> dict[str, Any]:
    from shapewise.cost.defaults import calibration_of
    from shapewise.cost.gemm import explain_gemm
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
    a16, coarse = max(1, 16 // DTYPE_BYTES[dtype]), gpu.alignment_elements(dtype)
    sweep = []
    for n in range(n_min, n_max + 1, n_step):
        ex = explain_gemm(m, n, k, gpu=gpu, dtype=dtype, suggest=False)
        sweep.append({"n": n, "time_us": ex.time_s * 1e6, "tflops": ex.tflops,
                      # the alignment class of N: a multiple of the GPU's full alignment,
                      # of 16 bytes only, or of neither
                      "aligned": ("full" if n % coarse == 0 else "16B" if n % a16 == 0
                                  else "none"),
                      "tile": list(ex.tile), "waves": ex.waves,
                      "last_wave_fill": round(ex.last_wave_fill, 4)})
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
        "align_16B_elements": a16, "align_elements": coarse,
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
    medians = []
    for cls, label in (("full", f"multiples of {rep['align_elements']}"),
                       ("16B", f"multiples of {rep['align_16B_elements']} only"),
                       ("none", f"not multiples of {rep['align_16B_elements']}")):
        ys = sorted(p["tflops"] for p in sw["points"] if p["aligned"] == cls)
        if ys:
            medians.append(f"{label} {ys[len(ys) // 2]:.0f}")
    print("median TFLOP/s by alignment of N: " + "; ".join(medians))
    if rep.get("sustained_clock"):
        print(f"In a long training run: {rep['sustained_clock']:.0%} of these math rates "
              f"(sustained clock; {rep['sustained_clock_source']})")
    else:
        print("In a long training run: no sustained-clock factor known for this GPU "
              "(burst rates are used)")


#: how the plot draws each alignment class of N: label, colour, marker size, z-order
def _classes(rep: dict[str, Any]) -> list[tuple[str, str, str, float, int]]:
    a16, full = rep["align_16B_elements"], rep["align_elements"]
    return [
        ("full", f"N a multiple of {full} (fully aligned)", "#1f77b4", 10.0, 3),
        ("16B", f"N a multiple of {a16}, not of {full} (16-byte aligned only)", "#ff7f0e",
         4.0, 2),
        ("none", f"N not a multiple of {a16} (misses 16-byte alignment)", "#d62728", 2.0, 1),
    ]


def _annotate(ax: Any, pts: list[dict[str, Any]], aligned: list[dict[str, Any]]) -> None:
    """Name both effects on the data: the loss of the worst-aligned N next to an aligned one,
    and the largest drop between neighbouring aligned N (a new wave of tiles)."""
    by_n = {p["n"]: p for p in pts}
    pairs = [(p, by_n.get(p["n"] + 1)) for p in aligned]
    pairs = [(a, b) for a, b in pairs if b is not None and b["aligned"] == "none"]
    if pairs:
        a, b = max(pairs, key=lambda ab: ab[0]["tflops"])
        ax.annotate(f"N={b['n']}: {b['tflops'] / a['tflops'] - 1:+.0%} against N={a['n']}\n"
                    "(misaligned: narrow loads)", xy=(b["n"], b["tflops"]),
                    xytext=(b["n"], b["tflops"] * 0.55), ha="center", fontsize=9,
                    arrowprops={"arrowstyle": "->", "color": "#d62728"}, color="#d62728")
    lo, hi = pts[0]["n"], pts[-1]["n"]
    inner = [p for p in aligned if lo + 0.1 * (hi - lo) <= p["n"] <= hi - 0.1 * (hi - lo)]
    drops = [(a, b) for a, b in itertools.pairwise(inner)
             if b["waves"] > a["waves"] or b["tile"] != a["tile"]]
    if drops:
        a, b = min(drops, key=lambda ab: ab[1]["tflops"] / ab[0]["tflops"])
        if b["tflops"] < a["tflops"]:
            ax.annotate(f"N={a['n']} -> {b['n']}: {b['tflops'] / a['tflops'] - 1:+.0%}\n"
                        f"(last wave {a['last_wave_fill']:.0%} full -> a new wave "
                        f"{b['last_wave_fill']:.0%} full)", xy=(b["n"], b["tflops"]),
                        xytext=(b["n"], a["tflops"] * 1.12), ha="center", fontsize=9,
                        arrowprops={"arrowstyle": "->", "color": "#1f77b4"}, color="#1f77b4")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot: needs matplotlib (pip install 'shapewise[plot]')") from None
    return plt


def sweep_figure(rep: dict[str, Any]) -> Any:
    """The N sweep as a reader should see it without the text: y from zero, each
    alignment class its own labelled colour, the N whose tiles fill whole waves and those
    that start a nearly empty wave marked, both effects annotated, the legend outside the
    data. Returns the matplotlib figure (the caller saves and closes it)."""
    plt = _pyplot()
    sw = rep["sweep"]
    pts = sw["points"]
    peak = next(p["dense_tflops"] for p in rep["peaks"] if p["dtype"] == rep["dtype"])
    fig, ax = plt.subplots(figsize=(11, 6.4))
    for cls, label, colour, size, z in _classes(rep):
        sel = [p for p in pts if p["aligned"] == cls]
        if not sel:
            continue
        xs, ys = [p["n"] for p in sel], [p["tflops"] for p in sel]
        if cls == "full":  # few points: join them, so the wave steps read as one line
            ax.plot(xs, ys, color=colour, lw=1.2, marker="o", ms=3, zorder=z,
                    label=f"{label}: {len(sel)} sizes")
        else:
            ax.scatter(xs, ys, s=size, color=colour, lw=0, zorder=z,
                       label=f"{label}: {len(sel)} sizes")
    aligned = [p for p in pts if p["aligned"] == "full"]
    whole = [p for p in aligned if p["last_wave_fill"] >= 0.999]
    empty = [p for p in aligned if p["last_wave_fill"] < 0.25]
    if whole:
        ax.scatter([p["n"] for p in whole], [p["tflops"] for p in whole], marker="^", s=60,
                   facecolor="none", edgecolor="black", lw=1.3, zorder=5,
                   label="tiles fill whole waves (last wave 100% full)")
    if empty:
        ax.scatter([p["n"] for p in empty], [p["tflops"] for p in empty], marker="v", s=60,
                   facecolor="none", edgecolor="#555555", lw=1.3, zorder=5,
                   label="N that starts a nearly empty wave (last wave < 25% full)")
    _annotate(ax, pts, aligned)
    ax.axhline(peak, color="black", ls="--", lw=0.9, zorder=0,
               label=f"dense {rep['dtype']} peak, {peak:g} TFLOP/s")
    ax.set_ylim(0, peak * 1.06)  # from zero: the teeth keep their true size
    ax.set_xlim(pts[0]["n"], pts[-1]["n"])
    step = pts[1]["n"] - pts[0]["n"] if len(pts) > 1 else 1
    ax.set_xlabel(f"N, columns of the GEMM (every {step} from {pts[0]['n']})")
    ax.set_ylabel(f"predicted {rep['dtype']} TFLOP/s")
    cal = ("fitted calibration" if rep["calibration"] == "fitted"
           else "spec-derived calibration, not measured")
    ax.set_title(f"{rep['name']}: {rep['dtype']} GEMM, M={sw['m']} x N x K={sw['k']} "
                 f"({cal}); {rep['wave_slots']} tiles per wave", fontsize=11)
    ax.grid(alpha=0.3)
    # the legend sits under the axes, never over the data; its dots drawn large enough to see
    leg = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, fontsize=9,
                    frameon=False)
    for handle in leg.legend_handles:
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([40])
    fig.tight_layout()
    return fig


def _plot(rep: dict[str, Any], path: str) -> None:
    """Save :func:`sweep_figure` as a PNG whose text chunks repeat its title, axis labels
    and legend (so a test, or a reader's tool, can check what the picture says)."""
    plt = _pyplot()
    fig = sweep_figure(rep)
    ax = fig.axes[0]
    legend = ax.get_legend()
    meta = {"Title": ax.get_title(), "Software": "shapewise report --plot",
            "Description": json.dumps({
                "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                "ylim": list(ax.get_ylim()),
                "legend": [t.get_text() for t in legend.get_texts()] if legend else []})}
    try:
        fig.savefig(path, dpi=120, metadata=meta)
    except OSError as exc:
        raise InputError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    gpu = resolve_gpu(args)
    args.dtype = dtype_for(args, gpu)
    m_note = None
    if args.m is None:  # the shared default sequence length, one sequence per micro-batch
        args.m = DEFAULT_SEQ_LEN
        m_note = (f"M = {DEFAULT_SEQ_LEN}: the default (micro-batch 1 x the default seq_len "
                  f"{DEFAULT_SEQ_LEN}; pass --m to change)")
    rep = build_report(gpu, args.dtype, args.m, args.k, args.n_min, args.n_max, args.n_step)
    if m_note:
        rep["notes"] = [m_note]
    if args.plot:
        _plot(rep, args.plot)
    if args.json:
        print_json(rep)
    else:
        _print(rep)
        for note in rep.get("notes", []):
            print(f"note: {note}")
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0
