"""``shapewise bench`` as a user runs it: a real process, killed with SIGKILL mid-run and
resumed; bad input as one line and exit code 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from shapewise.bench.plan import Target, make_plan
from shapewise.bench.store import load_document

TINY_KEYS = [s.key for s in make_plan(Target(device="cpu", dtype="fp32"), "tiny")]


def _bench_argv(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "shapewise", "bench", "--device", "cpu", "--plan", "tiny",
            "--out", str(out), "--no-progress", *extra]


def _count(out: Path) -> int:
    try:
        return len(json.loads(out.read_text())["measurements"])
    except (OSError, ValueError, KeyError):
        return 0  # not written yet (it is never half-written)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.Popen(_bench_argv(out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _count(out) < 3:
            assert proc.poll() is None, f"bench ended before the kill: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no measurement within 120 s"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    killed = load_document(out)  # whole and loadable after the kill
    before = killed["measurements"]
    assert 3 <= len(before) < len(TINY_KEYS), "the kill should land mid-run"
    assert not killed["run"]["complete"]

    done = subprocess.run(_bench_argv(out, "--resume"), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} of {len(TINY_KEYS)} already measured" in done.stderr
    doc = load_document(out)
    keys = [r["key"] for r in doc["measurements"]]
    assert len(keys) == len(set(keys)), "duplicates"
    assert sorted(keys) == sorted(TINY_KEYS), "incomplete"
    assert doc["measurements"][: len(before)] == before, "a finished measurement changed"
    assert doc["run"]["complete"] and [s["resumed"] for s in doc["run"]["sessions"]] == [
        False, True]
    assert not list(tmp_path.glob(".bench.json.lock"))


def test_cli_runs_and_summarises(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    proc = subprocess.run(_bench_argv(out), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(TINY_KEYS) - 1} measured, 1 skipped, 0 left" in proc.stdout
    assert load_document(out)["run"]["complete"]
    again = subprocess.run(_bench_argv(out), capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 2 and "--resume" in again.stderr


@pytest.mark.parametrize(("extra", "match"), [
    (["--dtype", "fp8"], "--dtype"),
    (["--dtype", "float128"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--budget-seconds", "-3"], "--budget-seconds"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, extra: list[str],
                                          match: str) -> None:
    argv = [sys.executable, "-m", "shapewise", "bench", "--out", str(tmp_path / "b.json"),
            *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert match in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_missing_out_folder_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(_bench_argv(tmp_path / "no" / "b.json"), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "--out: folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


