"""How a bench profile was made: command, date, machine, device, software, method.

Every measured number carries this (mamf-finder's rule): a profile without it cannot be
compared with another or trusted later. Only reads: the GPU tools are asked read-only
queries (``nvidia-smi --query-gpu``, ``rocm-smi --show*``); clocks, power limits and
other settings are never changed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from shapewise import __version__
from shapewise.bench.plan import PLAN_VERSION
from shapewise.kernels.timing import METHOD_VERSION

#: environment variables that change what a benchmark measures
_ENV_VARS = (
    "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG",
    "CUBLASLT_WORKSPACE_SIZE", "PYTORCH_TUNABLEOP_ENABLED", "HIPBLASLT_TUNING_FILE",
    "TORCH_BLAS_PREFER_HIPBLASLT", "PYTORCH_CUDA_ALLOC_CONF", "TRITON_INTERPRET",
)
_TOOL_TIMEOUT_S = 15


def utc_now() -> str:
    """ISO 8601 in UTC to the second, e.g. '2026-01-31T12:00:00+00:00'."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _run_tool(argv: Sequence[str]) -> str | None:
    """stdout of a read-only query, or None when the tool is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True,
                              timeout=_TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def cpu_info() -> dict[str, Any]:
    """CPU model, logical CPUs, the CPUs this process may use, max clock where readable."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "model": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        # other work on the machine slows CPU timings (and multi-threaded BLAS most)
        info["load_average_1_5_15min"] = [round(x, 2) for x in os.getloadavg()]
    # the machine's memory: a CPU profile fitted from this file records it
    with contextlib.suppress(AttributeError, OSError, ValueError):
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                  / 1e9, 1)
    try:
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        info["max_clock_mhz"] = int(khz.strip()) / 1000
    except (OSError, ValueError):
        pass
    return info


def _nvidia_smi(device: dict[str, Any]) -> dict[str, Any] | None:
    """Driver, clocks, power limit and modes of the measured GPU, as nvidia-smi reports them."""
    fields = ("index", "uuid", "name", "driver_version", "pci.bus_id", "clocks.sm", "clocks.mem",
              "clocks.max.sm", "clocks.max.mem", "power.limit", "power.max_limit",
              "temperature.gpu", "persistence_mode", "compute_mode", "mig.mode.current")
    text = _run_tool(["nvidia-smi", f"--query-gpu={','.join(fields)}",
                      "--format=csv,noheader,nounits"])
    if not text:
        return None
    rows = [dict(zip(fields, (v.strip() for v in line.split(",")), strict=False))
            for line in text.splitlines() if line.strip()]
    uuid = str(device.get("uuid") or "").lower()
    pick = [r for r in rows if uuid and uuid in r.get("uuid", "").lower()]
    if not pick and len(rows) == 1:
        pick = rows
    if not pick:  # cannot tell which row torch's device is: keep them all
        return {"gpus": rows}
    return pick[0]


def _rocm_smi() -> dict[str, Any] | None:
    """Driver, product and current clocks as rocm-smi reports them (JSON, read-only)."""
    text = _run_tool(["rocm-smi", "--showdriverversion", "--showproductname", "--showclocks",
                      "--showmaxpower", "--json"])
    if not text:
        return None
    try:
        return {"rocm_smi": json.loads(text)}
    except ValueError:
        return {"rocm_smi_text": text[:4000]}


def collect(*, device: str, device_info: dict[str, Any] | None = None,
            command: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance of a run on ``device`` ('cpu', 'cuda:0', ...).

    ``device_info`` is what ``shapewise.kernels.timing.device_info`` returned; torch and
    triton versions are read from the installed packages without importing them.
    """
    info = dict(device_info or {})
    prov: dict[str, Any] = {
        "command": command if command is not None else shlex.join(sys.argv),
        "date": utc_now(),
        "hostname": socket.gethostname(),
        "shapewise": __version__,
        "method_version": METHOD_VERSION,
        "plan_version": PLAN_VERSION,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "triton": _version("triton") or _version("pytorch-triton-rocm")
        or _version("pytorch-triton"),
        "numpy": _version("numpy"),
        "flash_attn": _version("flash-attn") or _version("flash_attn"),
        "device": device,
        "device_name": info.get("name") or "cpu",
        "device_info": info,
        "cpu": cpu_info(),
        "env": {k: os.environ[k] for k in _ENV_VARS if k in os.environ},
    }
    prov.update(_torch_facts(device))
    if device != "cpu":
        runtime = prov.get("runtime")
        smi = _rocm_smi() if runtime == "rocm" else _nvidia_smi(info)
        prov["smi"] = smi
        if smi:
            prov["driver"] = smi.get("driver_version") or _rocm_driver(smi)
    if extra:
        prov.update(extra)
    return prov


def _rocm_driver(smi: dict[str, Any]) -> str | None:
    text = json.dumps(smi)
    match = re.search(r'"Driver version"\s*:\s*"([^"]+)"', text, re.IGNORECASE)
    return match.group(1) if match else None


def _torch_facts(device: str) -> dict[str, Any]:
    """Runtime versions and the math-mode flags that change what a kernel computes."""
    import torch

    build = "rocm" if torch.version.hip else ("cuda" if torch.version.cuda else "cpu")
    facts: dict[str, Any] = {
        "runtime": build,  # what was measured: 'cuda' or 'rocm' on a GPU, 'cpu' below
        "torch_build": build,
        "cuda_version": torch.version.cuda,
        "hip_version": torch.version.hip,
        "torch_threads": torch.get_num_threads(),
        "threads": torch.get_num_threads(),  # the CPU's "SM count" for shapewise fit
        "torch_flags": {
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "matmul_allow_bf16_reduced_precision_reduction":
                torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
            "matmul_allow_fp16_reduced_precision_reduction":
                torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
    }
    if device == "cpu":
        config = torch.__config__.show()
        blas = re.search(r"BLAS_INFO=(\w+)", config)
        facts["cpu_blas"] = blas.group(1) if blas else None
        facts["mkldnn"] = bool(torch.backends.mkldnn.is_available())
        facts["runtime"] = "cpu"
    else:
        cudnn = torch.backends.cudnn
        facts["cudnn_version"] = cudnn.version() if cudnn.is_available() else None
    return facts
