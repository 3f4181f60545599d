"""``shapewise gpus``: the accelerator catalog as a table (or JSON with ``--json``).

Lists the built-in profiles plus any found through ``SHAPEWISE_PROFILES``. Peaks are dense
datasheet figures; "calibration" says whether the cost-model parameters were fitted to
measurements on that GPU or are the cross-GPU defaults.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from shapewise.cli._common import print_json

if TYPE_CHECKING:
    from shapewise.hardware.catalog import GPU

_MISSING = "-"  # the GPU has no math of that type (e.g. V100 bf16, A100 fp8)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gpus",
        help="list the GPUs shapewise knows (peaks, memory, links, calibration)",
        description=(
            "List the accelerator profiles: built-in ones and those in SHAPEWISE_PROFILES. "
            "TFLOP/s are dense peaks (no 2:4 sparsity). Use an id or alias with --gpu."
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print every profile as JSON (a list of objects)"
    )
    parser.add_argument(
        "--profile", metavar="FILE", action="append", default=[],
        help="also list this profile file (e.g. from 'shapewise fit'); repeatable; "
        "default: none, the catalog only",
    )
    parser.set_defaults(func=run)


def _calibration_status(gpu: GPU) -> str:
    cal = gpu.calibration
    if cal is not None and cal.status == "default" and cal.attention_backends:
        return "defaults, attention fitted"  # GEMM defaults; public attention timings fitted
    return "fitted" if cal is not None and cal.status == "fitted" else "defaults"


def _num(value: float | None) -> str:
    """989.4 -> '989.4', 80.0 -> '80'; None or 0 -> '-'. Cells are pre-formatted strings so a
    column mixing numbers and '-' still prints 312, not 312.0."""
    return f"{value:g}" if value else _MISSING


def _peak(gpu: GPU, dtype: str) -> str:
    return _num(gpu.peak_tflops.get(dtype))


def rows(gpus: list[GPU]) -> list[list[str]]:
    """One table row per GPU, in the column order of :data:`HEADERS`."""
    return [
        [
            gpu.id,
            gpu.name,
            f"{gpu.arch} ({gpu.arch_code})",
            str(gpu.sm_count),
            _peak(gpu, "bf16"),
            _peak(gpu, "fp8"),
            _num(gpu.memory_gb),
            _num(gpu.memory_bandwidth_tbs),
            _num(gpu.link_bandwidth_gbs),
            _calibration_status(gpu),
        ]
        for gpu in gpus
    ]


HEADERS = (
    "id",
    "name",
    "arch",
    "SMs/CUs",
    "bf16 TFLOP/s",
    "fp8 TFLOP/s",
    "memory GB",
    "bandwidth TB/s",
    "link GB/s (per dir)",
    "calibration",
)


def run(args: argparse.Namespace) -> int:
    from shapewise.hardware.catalog import gpu_to_dict, list_gpus, load_profile

    gpus = list_gpus() + [load_profile(path) for path in args.profile]
    if args.json:
        print_json([gpu_to_dict(gpu) for gpu in gpus])
        return 0

    from tabulate import tabulate

    align = ("left", "left", "left", *["right"] * 6, "left")
    print(tabulate(rows(gpus), headers=HEADERS, disable_numparse=True, colalign=align))
    print(
        f"\n{len(gpus)} GPUs. Dense peaks; '-' = not supported (or no scale-up link). "
        "Add your own profiles with SHAPEWISE_PROFILES=<folder>."
    )
    return 0
