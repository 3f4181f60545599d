"""Grouped-GEMM validation: DeepGEMM's grouped MoE rows against the GEMM model.

The H100 fp8 GEMM calibration is fitted on the *dense* ("Normal GEMMs") rows of
``deepgemm_h800_fp8.csv`` only (scripts/public_data.py skips the grouped layouts), so its
grouped rows are out of sample here. A grouped GEMM of G experts with m tokens each is priced
as ``Gemm(m, n, k, batch=G)`` (shapewise/cost/moe.py), with no parameter of its own.

    python scripts/validate_moe.py [DATA_FOLDER]

DATA_FOLDER defaults to ../shared/data; the script says so and exits 0 when it is absent.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from shapewise.cost.price import price
from shapewise.ops import Gemm

FILE = "deepgemm_h800_fp8.csv"


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / FILE).open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if not r["layout"].startswith("Normal")]


def main(argv: list[str]) -> int:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    folder = Path(argv[1]) if len(argv) > 1 else default
    if not (folder / FILE).is_file():
        print(f"{folder / FILE}: not found; nothing to validate (public data absent)")
        return 0
    errors = []
    print(f"{'layout':<34} {'G':>2} {'m/G':>5} {'n':>5} {'k':>5} {'meas us':>9} "
          f"{'pred us':>9} {'err %':>7}")
    for r in rows(folder):
        g = Gemm(m=int(r["m_per_group"]), n=int(r["n"]), k=int(r["k"]),
                 batch=int(r["groups"]), dtype="fp8")
        pred = price(g, "h100") * 1e6  # H800 = H100 SXM compute
        meas = float(r["time_us_derived"])
        err = 100 * (pred / meas - 1)
        errors.append(err)
        layout = r["layout"].split("(")[-1].rstrip(")")[:34]
        print(f"{layout:<34} {r['groups']:>2} {r['m_per_group']:>5} {r['n']:>5} {r['k']:>5} "
              f"{meas:9.1f} {pred:9.1f} {err:7.1f}")
    absolute = sorted(abs(e) for e in errors)
    print(f"\n{len(errors)} grouped rows: median |error| {statistics.median(absolute):.1f}%, "
          f"median signed {statistics.median(errors):+.1f}%, max |error| {absolute[-1]:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
