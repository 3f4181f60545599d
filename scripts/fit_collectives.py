#!/usr/bin/env python3
"""Fit the collective model's fabric parameters on public nccl-tests/rccl-tests sweeps.

    python scripts/fit_collectives.py [DATA_DIR] [--write] [--systems DIR] [--markdown]
                                      [--doc docs/validation.md] [--exponent X]

DATA_DIR holds ``collectives_bw.csv`` (default: ``../shared/data`` next to the repository;
when it is absent the script says so and exits 0). The rows are grouped in blocks (one
sweep: one source, GPU, node count and setting); each block names the system whose model
prices it and whether it fits the scale-up fabric (one node) or the scale-out network
(several). Per fabric three numbers are fitted (α per step, the achievable share η of the
wire rate, the half-point s½ of the size ramp; NVSwitch fabrics also the NVLS efficiency
and latency), minimising the squared log error of time, so a 2x miss at 8 bytes weighs as
much as one at 8 GiB. Scale-out is fitted after scale-up, with the scale-up numbers fixed.

Blocks marked ``held out`` are only evaluated: a setting the model does not describe
(HIP-graph launches), or NICs whose rate the source does not state.

With ``--write`` the fitted numbers go into the ``calibration`` block of every system JSON
whose fabric they belong to, with provenance (file, source commits, rows used, the fit
error per block). A fabric with no rows of its own keeps a labelled default borrowed from
the closest fitted one (status ``default``, provenance says from where).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from shapewise.cost import comm
from shapewise.hardware.system import FabricCalibration, System, get_system

FILE = "collectives_bw.csv"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_SYSTEMS = REPO / "profiles" / "systems"
#: nccl-tests bus-bandwidth factor per collective, n ranks (nccl-tests doc/PERFORMANCE.md)
BUS_FACTOR: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
}


@dataclass(frozen=True)
class Row:
    kind: str
    n: int
    nodes: int
    size: float
    time_s: float
    derived: bool  # time from algbw/busbw, not printed by the tool
    algorithm: str | None  # None: the library's own choice
    source: str = ""  # repository@commit of the row


@dataclass(frozen=True)
class BlockSpec:
    """Which rows make a block, what prices them, and what they fit."""

    name: str
    match: Callable[[dict[str, str]], bool]
    system: str
    role: str  # "scale_up", "scale_out" or "held_out"
    nic_gbs: float | None = None  # the block's NIC rate per GPU per direction, GB/s
    why: str = ""
    network: str = ""  # scale-out blocks: the network family fitted together


def _has(field: str, text: str) -> Callable[[dict[str, str]], bool]:
    return lambda r: text in r[field]


def _all(*preds: Callable[[dict[str, str]], bool]) -> Callable[[dict[str, str]], bool]:
    return lambda r: all(p(r) for p in preds)


def _is(field: str, value: str) -> Callable[[dict[str, str]], bool]:
    return lambda r: r[field] == value


BLOCKS: tuple[BlockSpec, ...] = (
    BlockSpec("MI300X 1 node (hisohara, rccl-tests)",
              _all(_has("gpu", "MI300X"), _is("n_nodes", "1"), _has("source", "hisohara")),
              "mi300x-8", "scale_up"),
    BlockSpec("MI300X 1 node (ROCm blog, graph off)",
              _all(_has("gpu", "MI300X"), _has("source", "ROCm/rocm-blogs"),
                   _has("env_or_flags", "graph off")), "mi300x-8", "scale_up"),
    BlockSpec("MI300X 1 node (stas00 points, 2 and 8 GPUs)",
              _all(_has("gpu", "MI300X"), _has("source", "stas00"), _is("n_nodes", "1")),
              "mi300x-8", "scale_up"),
    BlockSpec("MI325X 1 node (forced ring)",
              _all(_has("gpu", "MI325X"), _is("n_nodes", "1")), "mi325x-8", "scale_up",
              why="MI325X has MI300X's xGMI (7 links x 64 GB/s), fitted together"),
    BlockSpec("A100 1 node (stas00)", _all(_has("gpu", "A100 (SXM"), _is("n_nodes", "1")),
              "hgx-a100", "scale_up"),
    BlockSpec("H200 1 node (stas00 sweep, NVLS from 2 MiB)",
              _all(_has("gpu", "H200 SXM"), _has("env_or_flags", "5 warmup / 20 trials")),
              "hgx-h200", "scale_up"),
    BlockSpec("H200 1 node (stas00 points, NVLS on/off, AG/RS)",
              _all(_has("gpu", "H200 SXM"), _is("n_nodes", "1"),
                   lambda r: "5 warmup / 20 trials" not in r["env_or_flags"]),
              "hgx-h200", "scale_up"),
    BlockSpec("B200 1 node (stas00 sweep)",
              _all(_has("gpu", "B200"), _is("n_gpus", "8"), _is("env_or_flags", "default")),
              "hgx-b200", "scale_up"),
    BlockSpec("B200 1 node (stas00 points, NVLS on/off)",
              _all(_has("gpu", "B200"), _is("n_nodes", "1"), _has("env_or_flags", "NVLS")),
              "hgx-b200", "scale_up"),
    BlockSpec("H100 2 nodes (GCP A3-Mega, TCPXO 8x200G)",
              _all(_has("gpu", "H100"), _is("n_nodes", "2")), "hgx-h100", "scale_out",
              nic_gbs=25.0, network="gcp-tcpxo",
              why="A3-Mega: 8 x 200 Gb/s GPUDirect-TCPXO NICs per node (GCP A3 machine "
              "types; the result file does not print it)"),
    BlockSpec("B200 4 nodes (AWS p6, EFA v4 8x400G)",
              _all(_has("gpu", "B200"), _is("n_nodes", "4")), "hgx-b200", "scale_out",
              nic_gbs=50.0, network="aws-efa", why="8 x 400 Gb/s per node, as the row states"),
    BlockSpec("H200 4 nodes (AWS p5en, EFA 16x200G)",
              _all(_has("gpu", "H200 (AWS p5en"), _is("n_nodes", "4")), "hgx-h200",
              "scale_out", nic_gbs=50.0, network="aws-efa",
              why="16 x 200 Gb/s per node per the AWS spec quoted in the row"),
    BlockSpec("MI300X 1 node (ROCm blog, HIP graphs)",
              _all(_has("gpu", "MI300X"), _has("source", "ROCm/rocm-blogs"),
                   _has("env_or_flags", "-G 1")), "mi300x-8", "held_out",
              why="HIP-graph launches remove most launch latency; eager training does not"),
    BlockSpec("MI300X 2 nodes (RoCE, rate not stated)",
              _all(_has("gpu", "MI300X"), _is("n_nodes", "2")), "mi300x-8", "held_out",
              nic_gbs=50.0, why="8 mlx5 NICs, rate not stated: 400 Gb/s assumed"),
    BlockSpec("MI325X 2-8 nodes (RoCE, forced ring, rate not stated)",
              _all(_has("gpu", "MI325X"), lambda r: r["n_nodes"] != "1"), "mi325x-8",
              "held_out", nic_gbs=50.0,
              why="8 Broadcom NICs, rate not stated: 400 Gb/s assumed"),
    BlockSpec("A100 4 nodes (Jean Zay, Omni-Path, torch benchmark)",
              _all(_has("gpu", "Jean Zay")), "hgx-a100", "held_out", nic_gbs=6.25,
              why="4 x 100 Gb/s Omni-Path per node of 8; a torch.distributed timing, "
              "converted from Gb/s"),
)
#: blocks deliberately not used, and why (reported, never silently dropped)
UNUSED = {
    "MI355X": "no MI355X profile or system in the catalog",
}


def _algorithm(r: dict[str, str]) -> str | None:
    stated = r["algo_stated"].lower()
    flags = r["env_or_flags"]
    if stated.startswith("ring/ll up to 1mib, nvls/simple from 2mib"):
        # the author read NCCL's choice per size from NCCL_DEBUG=TUNING
        return "ring" if float(r["size_bytes"]) <= 2**20 else "nvls"
    if "nvlstree" in stated:
        return "tree"  # NVLS inside the node, tree across: priced as the tree
    if stated.startswith("nvls"):
        return "nvls"
    if stated.startswith("ring") and ("forced" in stated or "NVLS_ENABLE=0" in flags
                                      or "selected" in stated or "SIMPLE" in r["algo_stated"]
                                      or stated.strip() == "ring"):
        return "ring"
    return None


def _time(r: dict[str, str]) -> tuple[float, bool] | None:
    size = float(r["size_bytes"])
    n = int(r["n_gpus"])
    if r["oop_time_us"]:
        return float(r["oop_time_us"]) * 1e-6, False
    if r["oop_algbw_GBps"] and float(r["oop_algbw_GBps"]) > 0:
        return size / (float(r["oop_algbw_GBps"]) * 1e9), True
    if r["oop_busbw_GBps"] and float(r["oop_busbw_GBps"]) > 0 and r["collective"] in BUS_FACTOR:
        return size * BUS_FACTOR[r["collective"]](n) / (float(r["oop_busbw_GBps"]) * 1e9), True
    return None


def read_blocks(folder: Path) -> tuple[dict[str, list[Row]], dict[str, int], list[str]]:
    """(block name -> rows, skipped counts by reason, source commits of the rows used)."""
    path = folder / FILE
    with open(path, newline="", encoding="utf-8") as fh:
        raw = list(csv.DictReader(fh))
    blocks: dict[str, list[Row]] = {b.name: [] for b in BLOCKS}
    skipped: dict[str, int] = {}
    sources: set[str] = set()
    for r in raw:
        spec = next((b for b in BLOCKS if b.match(r)), None)
        if spec is None:
            reason = next((why for key, why in UNUSED.items() if key in r["gpu"]),
                          "matches no block")
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        t = _time(r)
        size = float(r["size_bytes"])
        if t is None or size <= 0:
            skipped["no time, algbw or busbw"] = skipped.get("no time, algbw or busbw", 0) + 1
            continue
        blocks[spec.name].append(Row(kind=r["collective"], n=int(r["n_gpus"]),
                                     nodes=int(r["n_nodes"]), size=size, time_s=t[0],
                                     derived=t[1], algorithm=_algorithm(r),
                                     source=r["source"].split(":")[0]))
        sources.add(r["source"].split(":")[0])
    for name, rows in blocks.items():
        kept = _monotone(rows)
        if len(kept) < len(rows):
            reason = ("slower than a message twice its size in the same sweep (start-up or "
                      "protocol artefact; the model's time never falls with size)")
            skipped[reason] = skipped.get(reason, 0) + len(rows) - len(kept)
            blocks[name] = kept
    return blocks, skipped, sorted(sources)


#: a row is dropped when its time exceeds that of the next larger size of its sweep by this
NON_MONOTONE = 1.5


def _monotone(rows: list[Row]) -> list[Row]:
    """Drop rows much slower than the next larger message of the same sweep."""
    keep = []
    for r in rows:
        bigger = [o for o in rows if o.kind == r.kind and o.n == r.n and o.nodes == r.nodes
                  and o.algorithm == r.algorithm and o.size > r.size]
        nxt = min(bigger, key=lambda o: o.size, default=None)
        if nxt is None or r.time_s <= NON_MONOTONE * nxt.time_s:
            keep.append(r)
    return keep


def _system_for(spec: BlockSpec, up: FabricCalibration, out: FabricCalibration) -> System:
    s = get_system(spec.system)
    scale_out = s.scale_out
    if spec.nic_gbs is not None:
        scale_out = dataclasses.replace(scale_out, bandwidth_gbs=spec.nic_gbs)
    return dataclasses.replace(s, scale_out=scale_out,
                               calibration={"scale_up": up, "scale_out": out})


def predict(spec: BlockSpec, rows: Iterable[Row], up: FabricCalibration,
            out: FabricCalibration) -> np.ndarray:
    s = _system_for(spec, up, out)
    per = s.domain_size
    return np.array([comm.collective_time(r.kind, r.size, system=s, group_size=r.n,
                                          ranks_per_node=r.n // r.nodes if r.nodes > 1
                                          else min(r.n, per), algorithm=r.algorithm)
                     for r in rows])


def _cal(x: np.ndarray, nvls: bool) -> FabricCalibration:
    return FabricCalibration(alpha_us=float(x[0]), peak_fraction=float(x[1]),
                             half_size_bytes=float(math.exp(x[2])),
                             nvls_peak_fraction=float(x[3]) if nvls else None,
                             nvls_latency_us=float(x[4]) if nvls else None, status="fitted")


_LOW = [0.01, 0.05, math.log(1.0)]
_HIGH = [200.0, 0.99, math.log(1e11)]  # η < 1: never the whole wire


def fit_fabric(specs: list[BlockSpec], blocks: dict[str, list[Row]], *, role: str,
               fixed_up: dict[str, FabricCalibration] | None = None, nvls: bool = False,
               out: FabricCalibration | None = None) -> tuple[FabricCalibration, int]:
    """Least squares on log time over every row of ``specs``; returns (fit, rows used)."""
    used = [(s, blocks[s.name]) for s in specs if blocks[s.name]]
    n_rows = sum(len(r) for _, r in used)
    if not n_rows:
        raise ValueError("no rows")
    measured = np.concatenate([[r.time_s for r in rows] for _, rows in used])

    def residual(x: np.ndarray) -> np.ndarray:
        cal = _cal(x, nvls and role == "scale_up")
        preds = []
        for spec, rows in used:
            if role == "scale_up":
                preds.append(predict(spec, rows, cal, out or cal))
            else:
                preds.append(predict(spec, rows, (fixed_up or {})[spec.system], cal))
        return np.log(np.concatenate(preds)) - np.log(measured)

    x0 = [2.0, 0.7, math.log(4e6)] if role == "scale_up" else [10.0, 0.7, math.log(4e6)]
    lo, hi = list(_LOW), list(_HIGH)
    if nvls and role == "scale_up":
        x0 += [0.6, 20.0]
        lo += [0.05, 0.0]
        hi += [0.99, 500.0]
    res = least_squares(residual, x0, bounds=(lo, hi), x_scale="jac")
    return _cal(res.x, nvls and role == "scale_up"), n_rows


def errors(spec: BlockSpec, rows: list[Row], up: FabricCalibration,
           out: FabricCalibration) -> dict[str, float]:
    pred = predict(spec, rows, up, out)
    meas = np.array([r.time_s for r in rows])
    pct = np.abs(pred / meas - 1) * 100
    signed = (pred / meas - 1) * 100
    return {"rows": len(rows), "median_abs_pct": round(float(np.median(pct)), 1),
            "p90_abs_pct": round(float(np.percentile(pct, 90)), 1),
            "median_signed_pct": round(float(np.median(signed)), 1)}


def _fabric(system_id: str) -> str:
    return get_system(system_id).scale_up.fabric


#: a scale-up fabric with no rows borrows the fit of this one (status default)
BORROW = {"xgmi-mi250": "xgmi-mi300"}
#: the measured network whose fit every shipped system's scale-out borrows: no row in the
#: data is InfiniBand, RoCE at a stated rate or Slingshot; EFA is RDMA-like (SRD) at a
#: stated 400 Gb/s per GPU, where GCP's TCPXO is a TCP offload with far longer latency
SCALE_OUT_DEFAULT = "aws-efa"


def run(folder: Path, *, exponent: float | None = None) -> dict:
    """Fit every fabric; returns the fits, per-block errors and provenance material."""
    if exponent is not None:
        comm.RAMP_EXPONENT = exponent
    blocks, skipped, sources = read_blocks(folder)
    up_fits: dict[str, FabricCalibration] = {}
    rows_up: dict[str, int] = {}
    fit_sources: dict[str, list[str]] = {}
    placeholder = FabricCalibration(alpha_us=10.0, peak_fraction=0.7, half_size_bytes=4e6)
    up_specs = [b for b in BLOCKS if b.role == "scale_up"]
    for fabric in sorted({_fabric(b.system) for b in up_specs}):
        specs = [b for b in up_specs if _fabric(b.system) == fabric]
        if not any(blocks[s.name] for s in specs):
            continue
        nvls = all(get_system(b.system).scale_up.in_network_reduction for b in specs)
        up_fits[fabric], rows_up[fabric] = fit_fabric(specs, blocks, role="scale_up",
                                                      nvls=nvls, out=placeholder)
        fit_sources[fabric] = sorted({r.source for b in specs for r in blocks[b.name]})
    # every system whose link was measured, on its own or on a sibling of the same fabric
    up_by_system = {b.system: up_fits[_fabric(b.system)] for b in BLOCKS
                    if _fabric(b.system) in up_fits}
    out_fits: dict[str, FabricCalibration] = {}
    rows_out: dict[str, int] = {}
    for network in sorted({b.network for b in BLOCKS if b.role == "scale_out"}):
        specs = [b for b in BLOCKS if b.role == "scale_out" and b.network == network
                 and b.system in up_by_system]
        if any(blocks[s.name] for s in specs):
            out_fits[network], rows_out[network] = fit_fabric(
                specs, blocks, role="scale_out", fixed_up=up_by_system)
            fit_sources[network] = sorted({r.source for b in specs for r in blocks[b.name]})
    default_out = out_fits.get(SCALE_OUT_DEFAULT)
    held = _leave_block_out(blocks, up_by_system, placeholder)
    table = []
    for spec in BLOCKS:
        rows = blocks[spec.name]
        if not rows or spec.system not in up_by_system:
            table.append({"block": spec.name, "role": spec.role, "rows": len(rows),
                          "note": "no rows" if not rows else "its scale-up is not fitted"})
            continue
        out = out_fits.get(spec.network) or default_out or placeholder
        table.append({"block": spec.name, "role": spec.role, "system": spec.system,
                      "derived_times": sum(r.derived for r in rows),
                      **errors(spec, rows, up_by_system[spec.system], out),
                      **held.get(spec.name, {}), "note": spec.why})
    return {"up": up_fits, "rows_up": rows_up, "out": out_fits, "rows_out": rows_out,
            "table": table, "skipped": skipped, "sources": sources, "fit_sources": fit_sources,
            "exponent": comm.RAMP_EXPONENT}


#: a block is held out only when the rest of its fabric keeps at least this many rows
MIN_ROWS_LEFT = 6


def _leave_block_out(blocks: dict[str, list[Row]], up_by_system: dict[str, FabricCalibration],
                     placeholder: FabricCalibration) -> dict[str, dict[str, float]]:
    """Out-of-sample error per fitted block: refit its fabric without it, then predict it."""
    out: dict[str, dict[str, float]] = {}
    fitted = [b for b in BLOCKS if b.role in ("scale_up", "scale_out") and blocks[b.name]]
    for spec in fitted:
        if spec.role == "scale_up":
            peers = [b for b in fitted if b.role == "scale_up"
                     and _fabric(b.system) == _fabric(spec.system) and b is not spec]
        else:
            peers = [b for b in fitted if b.role == "scale_out" and b.network == spec.network
                     and b is not spec and b.system in up_by_system]
        if sum(len(blocks[b.name]) for b in peers) < MIN_ROWS_LEFT:
            continue
        if spec.role == "scale_up":
            nvls = get_system(spec.system).scale_up.in_network_reduction
            cal, _ = fit_fabric(peers, blocks, role="scale_up", nvls=nvls, out=placeholder)
            err = errors(spec, blocks[spec.name], cal, placeholder)
        else:
            cal, _ = fit_fabric(peers, blocks, role="scale_out", fixed_up=up_by_system)
            err = errors(spec, blocks[spec.name], up_by_system[spec.system], cal)
        out[spec.name] = {"held_out_median_abs_pct": err["median_abs_pct"],
                          "held_out_p90_abs_pct": err["p90_abs_pct"]}
    return out


def _cal_dict(cal: FabricCalibration, status: str, provenance: dict) -> dict:
    d = {"alpha_us": round(cal.alpha_us, 3), "peak_fraction": round(cal.peak_fraction, 4),
         "half_size_bytes": round(cal.half_size_bytes)}
    if cal.nvls_peak_fraction is not None:
        d["nvls_peak_fraction"] = round(cal.nvls_peak_fraction, 4)
        d["nvls_latency_us"] = round(cal.nvls_latency_us or 0.0, 2)
    d["status"] = status
    d["provenance"] = provenance
    return d


def write(result: dict, systems_dir: Path) -> list[str]:
    """Put the fits into each system JSON of ``systems_dir``; returns the files changed."""
    table = {t["block"]: t for t in result["table"]}
    blocks_rows = {t["block"]: t["rows"] for t in result["table"]}
    common = {"file": FILE, "script": "scripts/fit_collectives.py",
              "date": date.today().isoformat(), "ramp_exponent": result["exponent"],
              "objective": "least squares on log time"}
    changed = []
    for path in sorted(systems_dir.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        fabric = raw["scale_up"]["fabric"]
        src = fabric if fabric in result["up"] else BORROW.get(fabric)
        if src in result["up"]:
            blocks = [b.name for b in BLOCKS if b.role == "scale_up"
                      and _fabric(b.system) == src]
            measured = sorted({b.system for b in BLOCKS if b.role == "scale_up"
                               and _fabric(b.system) == src and blocks_rows[b.name]})
            prov = {**common, "source_commits": result["fit_sources"][src],
                    "fabric_fitted": src, "systems_measured": measured,
                    "rows_used": result["rows_up"][src],
                    "blocks": {b: {k: table[b][k] for k in ("rows", "median_abs_pct",
                                                             "p90_abs_pct")}
                               for b in blocks if "median_abs_pct" in table[b]}}
            status = "fitted"
            if src == fabric and raw["id"] not in measured:
                prov["note"] = (f"fitted on {', '.join(measured)} rows: the same link and "
                                f"switch generation, not this system itself")
            if src != fabric:
                status = "default"
                prov["note"] = (f"no measurement of {fabric} in the data: borrowed from the "
                                f"{src} fit")
            cal = result["up"][src]
            if not raw["scale_up"].get("in_network_reduction"):
                cal = dataclasses.replace(cal, nvls_peak_fraction=None, nvls_latency_us=None)
            elif cal.nvls_peak_fraction is None:
                cal = dataclasses.replace(cal, nvls_peak_fraction=0.7, nvls_latency_us=25.0)
            raw["calibration"]["scale_up"] = _cal_dict(cal, status, prov)
        if SCALE_OUT_DEFAULT in result["out"]:
            blocks = [b.name for b in BLOCKS if b.network == SCALE_OUT_DEFAULT]
            prov = {**common, "source_commits": result["fit_sources"][SCALE_OUT_DEFAULT],
                    "network_fitted": SCALE_OUT_DEFAULT,
                    "rows_used": result["rows_out"][SCALE_OUT_DEFAULT],
                    "blocks": {b: {k: table[b][k] for k in ("rows", "median_abs_pct",
                                                             "p90_abs_pct")}
                               for b in blocks if "median_abs_pct" in table[b]},
                    "note": f"no rows of this system's own network "
                            f"({raw['scale_out']['fabric']}): the {SCALE_OUT_DEFAULT} fit, "
                            "applied at this NIC's line rate, hence 'default'"}
            raw["calibration"]["scale_out"] = _cal_dict(result["out"][SCALE_OUT_DEFAULT],
                                                        "default", prov)
        text = json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
            changed.append(path.name)
    return changed


def markdown(result: dict) -> str:
    lines = ["| block | role | rows | median abs % | p90 abs % | median signed % | "
             "block left out: median / p90 abs % |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for t in result["table"]:
        if "median_abs_pct" not in t:
            lines.append(f"| {t['block']} | {t['role']} | {t['rows']} | – | – | – | – |")
            continue
        lobo = (f"{t['held_out_median_abs_pct']} / {t['held_out_p90_abs_pct']}"
                if "held_out_median_abs_pct" in t else "–")
        lines.append(f"| {t['block']} | {t['role'].replace('_', '-')} | {t['rows']} | "
                     f"{t['median_abs_pct']} | {t['p90_abs_pct']} | {t['median_signed_pct']} | "
                     f"{lobo} |")
    return "\n".join(lines)


DOC_BEGIN = ("<!-- collectives:begin (scripts/fit_collectives.py --doc writes between these "
             "marks) -->")
DOC_END = "<!-- collectives:end -->"


def doc_block(result: dict) -> str:
    """The validation section: fitted numbers, error per block, rows not used."""
    lines = [DOC_BEGIN, "",
             f"Generated {date.today().isoformat()} by `python scripts/fit_collectives.py "
             f"--doc docs/validation.md` from `{FILE}` (ramp exponent "
             f"{result['exponent']}).", "",
             "Fitted parameters per fabric (α per algorithm step, η the share of the wire "
             "rate a large collective reaches, s½ the message size at half of it):", ""]
    for fabric, cal in result["up"].items():
        name = f"scale-up `{fabric}` ({result['rows_up'][fabric]} rows)"
        lines.append(f"* {_describe(name, cal)}")
    for network, cal in result["out"].items():
        name = f"scale-out `{network}` ({result['rows_out'][network]} rows)"
        lines.append(f"* {_describe(name, cal)}")
    lines += ["", "Error of the model on time, per block. `scale-up` and `scale-out` blocks are "
              "the rows the fit used (in-sample); `held-out` blocks were not fitted. The last "
              "column refits the block's fabric without it and predicts it (out of sample; "
              f"only where the rest of the fabric keeps {MIN_ROWS_LEFT} rows or more).", "",
              markdown(result), ""]
    for reason, count in result["skipped"].items():
        lines.append(f"* {count} rows not used: {reason}.")
    notes = [f"* {t['block']}: {t['note']}." for t in result["table"] if t.get("note")]
    lines += [*notes, "", DOC_END]
    return "\n".join(lines)


def _describe(name: str, cal: FabricCalibration) -> str:
    nv = (f", NVLS η {cal.nvls_peak_fraction:.3f} latency {cal.nvls_latency_us:.1f} us"
          if cal.nvls_peak_fraction is not None else "")
    bound = " (η at the fit's upper bound)" if cal.peak_fraction >= _HIGH[1] - 1e-3 else ""
    return (f"{name}: α {cal.alpha_us:.2f} us/step, η {cal.peak_fraction:.3f}, "
            f"s½ {cal.half_size_bytes / 2**20:.2f} MiB{nv}{bound}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--write", action="store_true", help="write the fits into the systems")
    ap.add_argument("--systems", type=Path, default=DEFAULT_SYSTEMS,
                    help="folder of system JSONs to update (default: profiles/systems)")
    ap.add_argument("--markdown", action="store_true", help="print the error table as markdown")
    ap.add_argument("--doc", type=Path, metavar="MD",
                    help="replace the marked collectives block in this file (validation.md)")
    ap.add_argument("--exponent", type=float, default=None,
                    help="ramp exponent to try instead of the model's (comparison only)")
    args = ap.parse_args(argv)
    if not (args.data / FILE).is_file():
        print(f"fit_collectives: {args.data / FILE} not found; nothing fitted (the public "
              "data is not shipped)")
        return 0
    if args.write and args.exponent is not None:
        ap.error("--exponent is for comparison; the written fit uses the model's exponent")
    result = run(args.data, exponent=args.exponent)
    print(f"ramp exponent {result['exponent']}")
    for fabric, cal in result["up"].items():
        print(_describe(f"scale-up {fabric} ({result['rows_up'][fabric]} rows)", cal))
    for network, cal in result["out"].items():
        print(_describe(f"scale-out {network} ({result['rows_out'][network]} rows)", cal))
    for reason, count in result["skipped"].items():
        print(f"skipped {count} rows: {reason}")
    print(markdown(result) if args.markdown else "\n".join(
        f"{t['block']:<58} {t['role']:<9} rows {t['rows']:>3}  "
        + (f"median {t['median_abs_pct']:>5}%  p90 {t['p90_abs_pct']:>5}%"
           + (f"  (block left out: {t['held_out_median_abs_pct']}% / "
              f"{t['held_out_p90_abs_pct']}%)" if "held_out_median_abs_pct" in t else "")
           if "median_abs_pct" in t else t["note"]) for t in result["table"]))
    if args.doc:
        old = args.doc.read_text(encoding="utf-8") if args.doc.is_file() else ""
        text = doc_block(result)
        if DOC_BEGIN in old and DOC_END in old:
            head, rest = old.split(DOC_BEGIN, 1)
            new = head + text + rest.split(DOC_END, 1)[1]
        else:
            new = old + ("\n" if old else "") + text + "\n"
        args.doc.write_text(new, encoding="utf-8")
        print(f"wrote the collectives section of {args.doc}")
    if args.write:
        changed = write(result, args.systems)
        print(f"wrote {len(changed)} system files: {', '.join(changed) or 'none changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
