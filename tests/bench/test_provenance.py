"""Provenance: every profile says how it was made."""

from __future__ import annotations

import datetime as dt

import pytest

pytest.importorskip("torch")

from shapewise.bench import provenance
from shapewise.kernels.timing import METHOD_VERSION, device_info


def test_cpu_provenance_fields() -> None:
    prov = provenance.collect(device="cpu", device_info=device_info("cpu"),
                              command="shapewise bench --device cpu")
    for field in ("command", "date", "hostname", "device", "device_name", "torch", "triton",
                  "python", "runtime", "cuda_version", "hip_version", "method_version",
                  "plan_version", "cpu", "torch_threads", "torch_flags", "env"):
        assert field in prov, field
    assert prov["command"] == "shapewise bench --device cpu"
    assert prov["method_version"] == METHOD_VERSION
    assert prov["runtime"] == "cpu" and prov["device_name"] == "cpu"
    assert prov["cpu"]["logical_cpus"] >= 1 and prov["cpu"]["model"]
    date = dt.datetime.fromisoformat(prov["date"])
    assert date.utcoffset() == dt.timedelta(0)
    assert "smi" not in prov  # no GPU tool is asked about a CPU run


def test_gpu_tools_are_only_queried(monkeypatch: pytest.MonkeyPatch) -> None:
    """nvidia-smi is asked a --query-gpu, nothing that changes a setting."""
    seen: list[list[str]] = []

    def fake(argv: list[str]) -> str:
        seen.append(list(argv))
        return ("0, GPU-abc, NVIDIA H100 80GB HBM3, 550.54, 00000000:19:00.0, 1980, 2619, "
                "1980, 2619, 700.00, 700.00, 35, Enabled, Default, Disabled")

    monkeypatch.setattr(provenance, "_run_tool", fake)
    smi = provenance._nvidia_smi({"uuid": "abc"})
    assert smi is not None and smi["driver_version"] == "550.54"
    assert smi["clocks.max.sm"] == "1980"
    assert all(arg.startswith(("nvidia-smi", "--query-gpu=", "--format=")) for arg in seen[0])
