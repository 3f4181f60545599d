"""Readers for the public measurements in ../shared/data (never copied into this repo).

Each reader yields :class:`GemmObservation` records mapped to a catalog profile id. Rows for
GPUs without a profile, or measured a way the cost model does not describe, are skipped and
counted (see ``SKIPPED``). The data folder's README gives each file's origin and method.

Calibration files only: ``xla_matmul_perf_table.csv`` is the validation set and is read by
``read_validation`` alone, which nothing in the fit calls.
"""

from __future__ import annotations

import csv
import math
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
    "aiter_tuned_gemm_gfx942_bf16.csv",
    "h100_tf32_gemm_squares.csv",
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
    "aiter_tuned_gemm_gfx942_bf16.csv": "ROCm/aiter@e4048607/9ba74fe",
    "h100_tf32_gemm_squares.csv": "waynehacking8/blackwell-tensorcore-kernels@fd74d2ac68cf",
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


VALIDATE_COMMAND = "python scripts/validate_public.py --write docs/validation.md"
"""what writes docs/validation.md's public-data blocks (the GEMM, attention and decode ones)"""


def data_or_say(explicit: str | os.PathLike[str] | None, *, script: str,
                skipped: str) -> Path | None:
    """:func:`data_dir`, and when no folder is found, one line on stderr that names the
    ``script`` and what it ``skipped`` (a run without the public data is not an error)."""
    folder = data_dir(explicit)
    if folder is None:
        print(f"{script}: public data folder not found (../shared/data or --data); "
              f"{skipped}", file=sys.stderr)
    return folder


def generated(command: str) -> str:
    """The opening of a generated block's provenance line: today's date (UTC), the command
    that wrote it and the shapewise version."""
    import datetime as dt

    from shapewise import __version__

    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return f"Generated {date} by `{command}` (shapewise {__version__}) from "


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


def _profiled_rows(folder: Path, src: str, column: str, profiles: dict[str, str]
                   ) -> Iterator[tuple[str, dict[str, str]]]:
    """(profile id, row) for the rows of ``src`` whose ``column`` names a known GPU."""
    for r in _rows(folder, src):
        gid = profiles.get(r[column])
        if gid is None:
            SKIPPED[f"{src}: no profile for {r[column]}"] += 1
            continue
        yield gid, r


def read_calibration(folder: Path) -> Iterator[tuple[str, GemmObservation]]:
    """(profile id, observation) for every usable calibration row."""
    src = "vidur_fp16_linear.csv"
    for gid, r in _profiled_rows(folder, src, "gpu", _VIDUR):
        if (o := _obs(gid, "fp16", r["m"], r["n"], r["k"], "1", r["time_us_median"], src)):
            yield o
    src = "neusight_fp32_gemm.csv"
    for gid, r in _profiled_rows(folder, src, "gpu", _NEUSIGHT):
        if (o := _obs(gid, "fp32", r["m"], r["n"], r["k"], r["batch"], r["time_us"], src)):
            yield o
    src = "kernelbench_fp32_matmul.csv"
    for gid, r in _profiled_rows(folder, src, "hardware", _KERNELBENCH):
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
    yield from read_calibration_new(folder)


#: files whose bf16 rows are read as 16-bit rows of the shared fp16/bf16 efficiency
AS_16BIT = ("aiter_tuned_gemm_gfx942_bf16.csv",)
_SQUARES_DTYPE = {"cublas_tf32": "tf32", "cublas": "fp32", "cublas_tc": "fp16"}


def read_calibration_new(folder: Path) -> Iterator[tuple[str, GemmObservation]]:
    """The two GEMM calibration files added for issue #11 (item 6)."""
    src = "aiter_tuned_gemm_gfx942_bf16.csv"
    if (folder / src).is_file():
        for r in _rows(folder, src):
            if r["cu_num"] != "304":  # MI308X (80 CUs) has no profile
                SKIPPED[f"{src}: {r['cu_num']} CUs (no profile)"] += 1
                continue
            # MI300X or MI325X (the file cannot tell; same 304 CUs and clock): MI300X profile.
            # bf16 and fp16 run the same MFMA instructions at the same peak, and the fit keeps
            # one 16-bit efficiency (fit.SHARED_EFFICIENCY): these rows join TunableOp's fp16
            if (o := _obs("mi300x", "fp16", r["m"], r["n"], r["k"], r["batch"], r["time_us"],
                          src)):
                yield o
    src = "h100_tf32_gemm_squares.csv"
    if (folder / src).is_file():
        for r in _rows(folder, src):
            dt = _SQUARES_DTYPE.get(r["kernel_label"])
            if dt is None:
                SKIPPED[f"{src}: {r['kernel_label']}"] += 1
                continue
            if (o := _obs("h100-sxm", dt, r["m"], r["n"], r["k"], r["batch"], r["time_us"],
                          src)):
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


# --------------------------------------------------------------------------- attention

ATTENTION_FILES = ("cudnn_frontend_sdpa.csv", "attention_issue_threads.csv",
                   "vidur_a100_attention.csv")
SOURCE_COMMITS.update({
    "cudnn_frontend_sdpa.csv": "NVIDIA/cudnn-frontend (per-row source commit)",
    "attention_issue_threads.csv": "public issue/PR threads (per-row source URL)",
    "vidur_a100_attention.csv": "microsoft/vidur@e2d00e9",
})

#: implementation names in cudnn_frontend_sdpa.csv -> backend ids
_SDPA_IMPL = {
    "cudnn": "cudnn", "cudnn_fe": "cudnn", "cudnn_sdpa": "cudnn", "pyt_cudnn": "cudnn",
    "cudnn_fe_fp8": "cudnn", "pyt_flash_attention": "sdpa-flash",
    "pytorch_sdpa(flash2 backend)": "sdpa-flash", "flash_attention": "fa2",
    "pyt_math": "sdpa-math",
}
_THREAD_IMPL = {
    "ROCm flash-attention (CK) batched API": ("ck", "mi250x-gcd"),
    "PyTorch SDPA FLASH_ATTENTION (packed layout)": ("sdpa-flash", "h100-sxm"),
    "PyTorch SDPA CUDNN_ATTENTION (packed layout)": ("cudnn", "h100-sxm"),
    "Triton tutorial 06-fused-attention": ("triton", "h100-sxm"),
    "FlashAttention-2 (as run by Triton tutorial)": ("fa2", "h100-sxm"),
    "FA4 CuTe-DSL (hdim_qk 192 / hdim_v 128)": ("fa4", "b200"),
}


def _sdpa_gpu(name: str) -> str | None:
    from shapewise.hardware.catalog import get_gpu

    head = name.split(" ")[0].lower()
    try:
        return get_gpu(head).id
    except ValueError:
        return None


def _window(notes: str) -> int | None:
    for part in notes.split(";"):
        part = part.strip()
        if part.startswith("sliding_window="):
            return int(part.split("=", 1)[1])
    return None


def _fa_style_time(r: dict[str, str], d: int, dv: int) -> float:
    """Seconds from a TFLOP/s figure in the FlashAttention benchmark convention.

    fwd = 4·b·s_q·s_k·h·d (halved when causal); bwd = 2.5 × fwd (the data README).
    """
    b, h = int(r["batch"]), int(r["n_heads"])
    sq, sk = int(r["seqlen_q"]), int(r["seqlen_k"])
    f = 2.0 * b * sq * sk * h * (d + dv) * (0.5 if r["causal"] == "True" else 1.0)
    if r["mode"] == "bwd":
        f *= 2.5
    return f / (float(r["tflops"]) * 1e12)


def read_attention(folder: Path):  # -> Iterator[AttentionObservation]
    """Every usable forward or backward row of the attention calibration files.

    Skipped (and counted in SKIPPED): fwd_bwd rows (a sum of both passes), deterministic
    backward rows (not PyTorch's default), mxfp8, PyTorch math OOM rows (``inf``), rows with
    dropout, GPUs without a profile, and the MI300X SDPA regression baseline (launch-bound
    tiny shapes, "a warning more than a calibration": the data README).
    vidur_a100_attention.csv is read by :func:`read_vidur_attention` (system-level op time).
    """
    from shapewise.cost.fit import AttentionObservation

    src = "cudnn_frontend_sdpa.csv"
    for r in _rows(folder, src) if (folder / src).is_file() else ():
        backend = _SDPA_IMPL.get(r["impl"])
        gid = _sdpa_gpu(r["gpu"])
        if r["mode"] not in ("fwd", "bwd"):
            SKIPPED[f"{src}: {r['mode']} (both passes in one figure)"] += 1
            continue
        if "deterministic_bwd=True" in r["notes"] and r["mode"] == "bwd":
            SKIPPED[f"{src}: deterministic backward"] += 1
            continue
        if r["dtype"] not in ("bf16", "fp16", "fp8"):
            SKIPPED[f"{src}: {r['dtype']}"] += 1
            continue
        if gid is None or backend is None:
            SKIPPED[f"{src}: no profile or backend for {r['gpu'][:20]} {r['impl']}"] += 1
            continue
        d, dv = int(r["head_dim"]), int(r["head_dim_v"] or r["head_dim"])
        try:
            t = float(r["time_us"]) * 1e-6 if r["time_us"] else _fa_style_time(r, d, dv)
        except (ValueError, ZeroDivisionError):
            t = math.nan
        if not (t > 0 and math.isfinite(t)):
            SKIPPED[f"{src}: no finite time (OOM)"] += 1
            continue
        yield AttentionObservation(
            gid, backend, r["dtype"], int(r["batch"]), int(r["n_heads"]), int(r["n_kv_heads"]),
            int(r["seqlen_q"]), int(r["seqlen_k"]), d, dv, r["causal"] == "True",
            _window(r["notes"]), r["mode"] == "bwd", t, f"{src} {r['source']}")
    src = "attention_issue_threads.csv"
    for r in _rows(folder, src) if (folder / src).is_file() else ():
        hit = _THREAD_IMPL.get(r["impl"])
        if hit is None:
            SKIPPED[f"{src}: {r['impl'][:40]} (regression baseline, launch-bound)"] += 1
            continue
        if "dropout=0.17" in r["notes"]:
            SKIPPED[f"{src}: dropout"] += 1
            continue
        backend, gid = hit
        d = int(r["head_dim"])
        dv = 128 if "head_dim_v=128" in r["notes"] else d
        dtype = r["dtype"] if r["dtype"] in ("fp16", "bf16") else "bf16"
        if r["time_us"]:
            t = float(r["time_us"]) * 1e-6
        else:
            t = _fa_style_time({**r, "seqlen_q": r["seqlen_q"], "seqlen_k": r["seqlen_k"]},
                               d, dv)
        yield AttentionObservation(
            gid, backend, dtype, int(r["batch"]), int(r["n_heads"]), int(r["n_kv_heads"]),
            int(r["seqlen_q"]), int(r["seqlen_k"]), d, dv, r["causal"] == "True", None,
            r["mode"] == "bwd", t, f"{src} {r['source']}")


def read_vidur_attention(folder: Path):  # -> Iterator[AttentionObservation]
    """Prefill rows of vidur_a100_attention.csv (A100, vLLM/Sarathi FLASH_ATTENTION op).

    The README: Kineto time of the whole attention op, ~2.6× a standalone FA2 kernel at
    q = kv = 4096; for shape trends, not FA2-kernel calibration. Decode rows (q = 1) are a
    different kernel (split-KV decode): :func:`read_vidur_decode`.
    """
    from shapewise.cost.fit import AttentionObservation

    src = "vidur_a100_attention.csv"
    for r in _rows(folder, src) if (folder / src).is_file() else ():
        if r["phase"] != "prefill":
            continue
        yield AttentionObservation(
            "a100-sxm-80gb", "fa2", r["dtype"], int(r["batch"]), int(r["n_q_heads"]),
            int(r["n_kv_heads"]), int(r["q_len"]), int(r["kv_len"]), int(r["head_dim"]),
            int(r["head_dim"]), r["causal"] == "True", None, False,
            float(r["time_us_median"]) * 1e-6, src)


def read_vidur_decode(folder: Path):  # -> Iterator[AttentionObservation]
    """Decode rows of vidur_a100_attention.csv: one query token per sequence against its cache.

    A100, fp16, 32 q / 4 kv heads, head dim 128 (the README §3); flash_attn_with_kvcache
    through Sarathi's FLASH_ATTENTION wrapper, Kineto kernel time (median). The step appends
    the new token's K and V before attending, so the kernel sees ``kv_cache_len_before + 1``
    keys: ``seq_len_kv`` counts them, as the prefill rows do (kv_len = cache + q_len), and
    the timings step at multiples of 128 keys of that count (FA2's split-KV key tile).
    Read by scripts/fit_decode.py (the decode model's calibration) and validate_public.py.
    """
    from shapewise.cost.fit import AttentionObservation

    src = "vidur_a100_attention.csv"
    for r in _rows(folder, src) if (folder / src).is_file() else ():
        if r["phase"] != "decode":
            continue
        try:
            t = float(r["time_us_median"]) * 1e-6
            q, cache = int(r["q_len"]), int(r["kv_cache_len_before"])
        except ValueError:
            SKIPPED[f"{src}: unreadable decode row"] += 1
            continue
        if not (t > 0 and math.isfinite(t)):
            SKIPPED[f"{src}: decode row without a finite time"] += 1
            continue
        yield AttentionObservation(
            "a100-sxm-80gb", "fa2", r["dtype"], int(r["batch"]), int(r["n_q_heads"]),
            int(r["n_kv_heads"]), q, cache + q, int(r["head_dim"]), int(r["head_dim"]),
            r["causal"] == "True", None, False, t, src)
