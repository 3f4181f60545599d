"""scripts/gpu_profile.sh on its CPU path: bench, then fit, into one folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from shapewise.bench.store import load_document

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_profile.sh"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_profile_script_runs_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "profile-run"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(SCRIPT), str(out), "--device", "cpu", "--plan", "tiny",
                           "--budget-seconds", "120"], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = load_document(out / "bench.json")
    assert doc["run"]["complete"] and doc["run"]["device_kind"] == "cpu"
    assert (out / "bench.log").stat().st_size > 0  # progress went to the log
    assert "selfcheck on cpu: 4 of 4 passed" in (out / "selfcheck.txt").read_text()
    assert "measured" in (out / "bench.log").read_text()  # the bench's summary, kept
    assert "== done" in proc.stdout
    fit_available = subprocess.run([sys.executable, "-m", "shapewise", "fit", "--help"],
                                   capture_output=True, check=False).returncode == 0
    if fit_available:
        profile = json.loads((out / "profile.json").read_text())
        assert profile["calibration"]["status"] == "fitted"
    # a second call resumes the finished bench instead of starting over
    again = subprocess.run(["bash", str(SCRIPT), str(out), "--device", "cpu", "--plan",
                            "tiny"], capture_output=True, text=True, env=env, timeout=600,
                           check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert load_document(out / "bench.json")["measurements"] == doc["measurements"]


def test_gpu_profile_script_usage() -> None:
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2 and "OUT_DIR" in proc.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_failing_selfcheck_stops_before_any_timing(tmp_path: Path) -> None:
    # a python whose selfcheck fails: the script must stop before the bench
    fake = tmp_path / "python"
    fake.write_text(f"""#!/bin/sh
if [ "$2" = "shapewise.kernels.selfcheck" ]; then echo "FAIL  gemm bf16"; exit 1; fi
exec {sys.executable} "$@"
""")
    fake.chmod(0o755)
    out = tmp_path / "run"
    proc = subprocess.run(["bash", str(SCRIPT), str(out), "--device", "cpu", "--plan", "tiny"],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHON": str(fake)})
    assert proc.returncode == 1 and "computes wrong results" in proc.stderr
    assert not (out / "bench.json").exists()
