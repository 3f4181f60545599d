"""Readers for the public measurements in ../shared/data (never copied into this repo).

Each reader yields :class:`GemmObservation` records mapped to a catalog profile id. Rows for
GPUs without a profile, or measured a way the cost model does not describe, are skipped and
counted (see ``SKIPPED``). The data folder's README gives each file's origin and method.

Calibration files only: ``xla_matmul_perf_table.csv`` is the validation set and is read by
``read_validation`` alone, which nothing in the fit calls.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from shapewise.cost.fit import GemmObservation

VALIDATION_FILE = "xla_matmul_perf_table.csv"
CALIBRATION_FILES = (
    "vidur_fp16_linear.csv",
    "neusight_fp32_gemm.csv",
    "deepbench_gemm.csv",
    "kernelbench_fp32_matmul.csv",
    "tunableop_mi300x_fp16_gemm.csv",
    "deepgemm_h800_fp8.csv",
    # llmcompass_fp16_matmul.csv: host wall-clock with ~20 us of launch+sync per call
    # (its README); not a kernel time, so not fitted.
    # vidur_a100_attention.csv: system-level attention op time (2.6x a standalone kernel,
    # its README); used only as a trend check, not for calibration.
)

SOURCE_COMMITS = {
    "vidur_fp16_linear.csv": "microsoft/vidur@7d47513363ec",
    "neusight_fp32_gemm.csv": "trsharm25/NeuSight@db1fdc966633",
    "deepbench_gemm.csv": "baidu-research/DeepBench@da81ba7",
    "kernelbench_fp32_matmul.csv": "ScalingIntelligence/KernelBench@21fbe5a64289/423217d9fda9",
    "tunableop_mi300x_fp16_gemm.csv": "vllm-project/vllm@ce164b70",
    "deepgemm_h800_fp8.csv": "deepseek-ai/DeepGEMM@a6d97a1/55ab91f",
    "xla_matmul_perf_table.csv": "ROCm/xla@d02afb4fc18a",
}

# GPU names in the files -> catalog profile ids
_VIDUR = {"A100": "a100-sxm-80gb", "H100": "h100-sxm"}  # 80 GB per Vidur's config
_NEUSIGHT = {
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "NVIDIA L4": "l4",
    "AMD Instinct MI100": "mi100",
    "AMD Instinct MI210": "mi210",
}
_KERNELBENCH = {
    "NVIDIA A10": "a10",
    "NVIDIA A10G": "a10g",
    "NVIDIA A100-SXM4-40GB": "a100-sxm-40gb",
    "NVIDIA A100-SXM4-80GB": "a100-sxm-80gb",
    "NVIDIA B200": "b200",
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA H100 PCIe": "h100-pcie",
    "NVIDIA L4": "l4",
    "NVIDIA L40S": "l40s",
}
_DEEPBENCH = {"V100": "v100-sxm2"}  # DeepBench's V100 rows (SXM2 per its results sheets)
_DEEPBENCH_DTYPE = {"fp16_in_fp32_acc": "fp16", "fp32": "fp32"}
_XLA = {"sm_90": "h100-sxm", "sm_100_B200": "b200", "gfx942": "mi300x"}
_XLA_DTYPE = {"bf16xbf16->bf16": "bf16", "f32xf32->f32": "tf32", "bf16xbf16->f32": "bf16"}

SKIPPED: Counter[str] = Counter()


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The data folder: ``explicit``, else $SHAPEWISE_DATA or ../shared/data; None if absent.

    A folder named explicitly (``--data``) must hold the files: when it does not, this
    prints one line naming it and exits 2, rather than fall back to another folder.
    """
    if explicit is not None:
        if (Path(explicit) / VALIDATION_FILE).is_file():
            return Path(explicit)
        print(f"{Path(sys.argv[0]).name}: --data {explicit}: no {VALIDATION_FILE} there",
              file=sys.stderr)
        raise SystemExit(2)
    for c in (os.environ.get("SHAPEWISE_DATA"),
              Path(__file__).resolve().parents[2] / "shared" / "data"):
        if c and (Path(c) / VALIDATION_FILE).is_file():
            return Path(c)
    return None


def _rows(folder: Path, name: str) -> Iterator[dict[str, str]]:
    with open(folder / name, newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _obs(gpu: str, dtype: str, m: str, n: str, k: str, b: str, us: str, src: str
         ) -> tuple[str, GemmObservation] | None:
    try:
        t = float(us) * 1e-6
        o = GemmObservation(dtype, int(m), int(n), int(k), int(b), t, src)
    except (TypeError, ValueError):
        SKIPPED[f"{src}: unreadable row"] += 1
        return None
    if not t > 0 or min(o.m, o.n, o.k, o.batch) <= 0:
        SKIPPED[f"{src}: non-positive"] += 1
        return None
    return gpu, o


def read_calibration(folder: Path) -> Iterator[tuple[str, GemmObservation]]:
    """(profile id, observation) for every usable calibration row."""
    src = "vidur_fp16_linear.csv"
    for r in _rows(folder, src):
        gid = _VIDUR.get(r["gpu"])
        if gid is None:
            SKIPPED[f"{src}: no profile for {r['gpu']}"] += 1
            continue
        if (o := _obs(gid, "fp16", r["m"], r["n"], r["k"], "1", r["time_us_median"], src)):
            yield o
    src = "neusight_fp32_gemm.csv"
    for r in _rows(folder, src):
        gid = _NEUSIGHT.get(r["gpu"])
        if gid is None:
            SKIPPED[f"{src}: no profile for {r['gpu']}"] += 1
            continue
        if (o := _obs(gid, "fp32", r["m"], r["n"], r["k"], r["batch"], r["time_us"], src)):
            yield o
    src = "kernelbench_fp32_matmul.csv"
    for r in _rows(folder, src):
        gid = _KERNELBENCH.get(r["hardware"])
        if gid is None:
            SKIPPED[f"{src}: no profile for {r['hardware']}"] += 1
            continue
        # the minimum of 100 event-timed trials is the closest to the kernel time
        if (o := _obs(gid, "fp32", r["m"], r["n"], r["k"], r["batch"], r["time_us_min"], src)):
            yield o
    src = "deepbench_gemm.csv"
    for r in _rows(folder, src):
        gid = _DEEPBENCH.get(r["gpu"])
        dt = _DEEPBENCH_DTYPE.get(r["dtype"])
        if gid is None or dt is None:
            SKIPPED[f"{src}: no profile for {r['gpu']} {r['dtype']}"] += 1
            continue
        if (o := _obs(gid, dt, r["m"], r["n"], r["k"], "1", r["time_us"], src)):
            yield o
    src = "tunableop_mi300x_fp16_gemm.csv"
    for r in _rows(folder, src):
        # F.linear: output rows = tokens, output cols = features, reduction = blas_k
        if (o := _obs("mi300x", "fp16", r["rowmajor_out_rows_tokens"],
                      r["rowmajor_out_cols_features"], r["blas_k"], "1", r["time_us"], src)):
            yield o
    src = "deepgemm_h800_fp8.csv"
    for r in _rows(folder, src):
        if not r["layout"].startswith("Normal"):
            SKIPPED[f"{src}: grouped MoE layout"] += 1
            continue
        # H800 = H100 SXM compute with a cut-down NVLink; fp8 block-scaled GEMMs
        if (o := _obs("h100-sxm", "fp8", r["m_per_group"], r["n"], r["k"], "1",
                      r["time_us_derived"], src)):
            yield o


def read_validation(folder: Path) -> Iterator[tuple[str, str, GemmObservation]]:
    """(profile id, XLA dtype key, observation) for the bf16 and f32 (TF32) rows."""
    src = VALIDATION_FILE
    for r in _rows(folder, src):
        gid = _XLA.get(r["xla_device_key"])
        dt = _XLA_DTYPE.get(r["dtype"])
        if gid is None or dt is None:
            continue
        if (o := _obs(gid, dt, r["m"], r["n"], r["k"], r["b"], r["time_us"], src)):
            yield gid, r["dtype"], o[1]
