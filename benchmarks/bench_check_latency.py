"""Latency of ``shapewise check config.json``, interpreter start included.

Target: under 1 s per invocation (the pre-commit and CI path). Runs the real command in a
fresh interpreter ``--repeat`` times and prints the best and median wall-clock time, next to
a bare ``python -c pass`` for the interpreter's own start-up, and confirms that the check
imports neither torch nor optuna.

    python benchmarks/bench_check_latency.py [--repeat 10] [CONFIG ...]

Measured figures depend on the machine: the output starts with how it was made.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = [ROOT / "tests" / "fixtures" / "hf" / "gpt2" / "config.json"]
TARGET_S = 1.0


def _time(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 1):
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, default=DEFAULT_CONFIGS)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--gpu", default="h100")
    args = parser.parse_args()

    from shapewise import __version__

    print(f"# bench_check_latency: shapewise {__version__}, Python {platform.python_version()}"
          f" ({sys.executable}), {platform.platform()}, {platform.processor() or '?'}")
    files = [str(p) for p in args.configs]
    cmd = [sys.executable, "-m", "shapewise", "check", *files, "--gpu", args.gpu]
    print(f"# command: {' '.join(cmd)}  (best/median of {args.repeat})")

    bare = _time([sys.executable, "-c", "pass"], args.repeat)
    check = _time(cmd, args.repeat)
    probe = ("import sys\nfrom shapewise.cli.main import main\n"
             f"main(['check', *{files!r}, '--gpu', {args.gpu!r}])\n"
             "print('torch' in sys.modules, 'optuna' in sys.modules, file=sys.stderr)")
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                           text=True).stderr.split()

    print(f"{'what':<34}{'best s':>8}{'median s':>10}")
    print(f"{'python -c pass':<34}{min(bare):>8.3f}{statistics.median(bare):>10.3f}")
    label = f"shapewise check ({len(files)} file{'s' if len(files) != 1 else ''})"
    print(f"{label:<34}{min(check):>8.3f}{statistics.median(check):>10.3f}")
    print(f"torch imported: {heavy[0]}, optuna imported: {heavy[1]}")
    ok = statistics.median(check) < TARGET_S and heavy == ["False", "False"]
    print(f"target: median under {TARGET_S:g} s without torch/optuna: "
          + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
