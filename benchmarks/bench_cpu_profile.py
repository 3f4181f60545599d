#!/usr/bin/env python3
"""The CPU measurement loop, timed (issue #5 targets on a 2-core CPU):

    python benchmarks/bench_cpu_profile.py [--keep DIR]

runs ``shapewise bench --device cpu --quick`` (target: <= 2 minutes) and ``shapewise fit``
on its output (target: cross-validated median GEMM error <= 15%), and prints both figures
with the machine's description. Run it on a quiet machine: CPU timings taken while other
processes hold the cores are recorded as contended and left out of the fit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="write bench.json and profile.json here")
    args = ap.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="shapewise-cpu-"))
    folder.mkdir(parents=True, exist_ok=True)
    bench, profile = folder / "bench.json", folder / "profile.json"
    for f in (bench, profile):
        f.unlink(missing_ok=True)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "shapewise", "bench", "--device", "cpu", "--quick",
                    "--out", str(bench), "--no-progress"], check=True)
    t_bench = time.monotonic() - t0
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "shapewise", "fit", str(bench), "--out",
                          str(profile), "--json"], check=True, capture_output=True, text=True)
    t_fit = time.monotonic() - t0
    rep = json.loads(out.stdout)
    prov = json.loads(bench.read_text())["provenance"]
    cv = rep["cross_validated"]["all"]
    print(f"machine: {prov.get('cpu', {}).get('model')}, {os.cpu_count()} CPUs, "
          f"torch {prov.get('torch')}, BLAS {prov.get('cpu_blas')}")
    print(f"bench --device cpu --quick: {t_bench:.1f} s (target <= 120 s)")
    print(f"fit: {t_fit:.1f} s, {rep['n_points']} GEMM timings; cross-validated median "
          f"{cv['median_abs_pct']:.1f}% (target <= 15%), p90 {cv['p90_abs_pct']:.1f}%")
    print(f"files in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
