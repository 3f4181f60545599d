"""run_bench: a real tiny sweep on the CPU, and the loop's logic (budget, resume, skips)
with the kernels replaced by a stand-in so that it runs in milliseconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from shapewise.bench import runner  # noqa: E402
from shapewise.bench.plan import Target, make_plan  # noqa: E402
from shapewise.bench.runner import run_bench  # noqa: E402
from shapewise.bench.store import load_document  # noqa: E402
from shapewise.errors import InputError  # noqa: E402
from shapewise.kernels import BenchResult  # noqa: E402

TINY_KEYS = [s.key for s in make_plan(Target(device="cpu", dtype="fp32"), "tiny")]


def _fake_result(median_s: float = 1e-3) -> BenchResult:
    """What a kernel module returns, for the loop tests that stand in for the kernels."""
    return BenchResult(median_s=median_s, spread_s=0.0, n_runs=1, flops=1, bytes=1,
                       method="fake")
COMMON = {"key", "kind", "group", "backend", "dtype", "median_s", "spread_s", "n_runs",
          "flops", "bytes", "status", "reason"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    assert run_bench(device="cpu", mode="tiny", out=out, progress=False) == out
    return load_document(out)


def test_tiny_run_is_complete_with_provenance(tiny_run: dict) -> None:
    assert [r["key"] for r in tiny_run["measurements"]] == TINY_KEYS
    run = tiny_run["run"]
    assert run["complete"] and run["stopped"] is None and run["done"] == len(TINY_KEYS)
    assert run["device_kind"] == "cpu" and run["dtype"] == "fp32"
    prov = tiny_run["provenance"]
    assert prov["device_name"] == "cpu" and prov["method_version"] and prov["date"]


def test_tiny_run_records(tiny_run: dict) -> None:
    recs = tiny_run["measurements"]
    for r in recs:
        assert set(r) >= COMMON, r["key"]
        if r["status"] == "ok":
            assert r["median_s"] > 0 and r["n_runs"] > 0 and r["spread_s"] >= 0
            assert r["reason"] == ""
    by_kind = {r["kind"] for r in recs}
    assert by_kind == {"gemm", "bmm", "attention", "elementwise"}
    for r in recs:
        if r["kind"] in ("gemm", "bmm"):
            assert {"m", "n", "k", "batch"} <= set(r)
        elif r["kind"] == "attention":
            assert {"batch", "heads", "kv_heads", "seq_len", "seq_len_kv", "head_dim",
                    "causal", "backward"} <= set(r)
        else:
            assert {"op", "numel"} <= set(r)
    skipped = [r for r in recs if r["status"] == "skipped"]
    # the memory-efficient SDPA backend has no CPU kernel: recorded and skipped
    assert [r["backend"] for r in skipped] == ["efficient"]
    assert skipped[0]["reason"].startswith("unsupported") and skipped[0]["median_s"] is None


# --------------------------------------------------------------- the loop, kernels faked
@pytest.fixture
def fake_kernels(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the kernels with a 20 ms stand-in; returns the keys it was asked for."""
    asked: list[str] = []

    def fake(spec, device, config):
        asked.append(spec.key)
        time.sleep(0.02)
        return BenchResult(median_s=1e-3, spread_s=1e-5, n_runs=10, flops=spec.flops,
                           bytes=spec.bytes, method="fake")

    monkeypatch.setattr(runner, "_run_spec", fake)
    return asked


def test_budget_stops_cleanly_and_resume_completes(tmp_path: Path, fake_kernels: list[str],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "b.json"
    # the clock starts at the call: let the set-up take 1 s of it and each kernel 1 s more
    clock = iter(range(1000))
    monkeypatch.setattr(runner, "_now", lambda: float(next(clock)))
    run_bench(device="cpu", mode="tiny", out=out, budget_seconds=4, progress=False)
    doc = load_document(out)
    first = doc["measurements"]
    assert 0 < len(first) < len(TINY_KEYS)
    assert not doc["run"]["complete"] and "budget" in doc["run"]["stopped"]
    assert "--resume" in capsys.readouterr().err

    monkeypatch.setattr(runner, "_now", time.monotonic)
    run_bench(device="cpu", mode="tiny", out=out, resume=True, progress=False)
    doc = load_document(out)
    keys = [r["key"] for r in doc["measurements"]]
    assert sorted(keys) == sorted(TINY_KEYS) and len(keys) == len(set(keys))
    assert doc["measurements"][: len(first)] == first  # nothing measured before is lost
    assert doc["run"]["complete"] and doc["run"]["stopped"] is None
    assert len(doc["run"]["sessions"]) == 2 and doc["run"]["sessions"][1]["resumed"]
    assert len(fake_kernels) == len(TINY_KEYS)  # each key measured exactly once


def test_out_of_memory_is_recorded_and_skipped(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(spec, device, config):
        if spec.kind == "bmm":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")
        return _fake_result()

    monkeypatch.setattr(runner, "_run_spec", oom)
    out = tmp_path / "b.json"
    run_bench(device="cpu", mode="tiny", out=out, progress=False)
    recs = {r["key"]: r for r in load_document(out)["measurements"]}
    bmm = next(r for r in recs.values() if r["kind"] == "bmm")
    assert bmm["status"] == "skipped" and bmm["reason"].startswith("out of memory")
    assert sum(r["status"] == "ok" for r in recs.values()) == len(TINY_KEYS) - 1


def test_unexpected_errors_are_recorded_and_the_sweep_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec, device, config):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(runner, "_run_spec", broken)
    out = tmp_path / "b.json"
    with pytest.warns(UserWarning, match="boom"):
        run_bench(device="cpu", mode="tiny", out=out, progress=False)
    recs = load_document(out)["measurements"]
    assert len(recs) == len(TINY_KEYS)
    assert all(r["reason"] == "error: ZeroDivisionError: boom" for r in recs)


def test_progress_lines_when_asked(tmp_path: Path, fake_kernels: list[str],
                                   capsys: pytest.CaptureFixture) -> None:
    run_bench(device="cpu", mode="tiny", out=tmp_path / "b.json", progress=True)
    err = capsys.readouterr().err
    assert f"{len(TINY_KEYS)}/{len(TINY_KEYS)}" in err and "TFLOP/s" in err


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"dtype": "float128"}, "--dtype"),
    ({"dtype": "fp8"}, "--dtype: bench measures"),
    ({"device": "tpu"}, "--device"),
    ({"budget_seconds": 0}, "--budget-seconds"),
    ({"mode": "huge"}, "mode"),
])
def test_bad_input_raises_input_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"device": "cpu", "out": tmp_path / "b.json", "progress": False, **kwargs}
    with pytest.raises(InputError, match=match):
        run_bench(**args)


def test_missing_out_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--out: folder"):
        run_bench(device="cpu", out=tmp_path / "nope" / "b.json")


def test_existing_out_needs_resume(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    out.write_text("{}")
    with pytest.raises(InputError, match="--resume"):
        run_bench(device="cpu", out=out)


def test_resume_refuses_another_dtype(tmp_path: Path, fake_kernels: list[str]) -> None:
    out = tmp_path / "b.json"
    run_bench(device="cpu", mode="tiny", out=out, progress=False)
    with pytest.raises(InputError, match="dtype"):
        run_bench(device="cpu", dtype="bf16", mode="tiny", out=out, resume=True)


def test_resume_refuses_another_mode(tmp_path: Path, fake_kernels: list[str]) -> None:
    out = tmp_path / "b.json"
    run_bench(device="cpu", mode="tiny", out=out, progress=False)
    with pytest.raises(InputError, match=r"--resume: .* with mode 'tiny', this run has 'quick'"):
        run_bench(device="cpu", mode="quick", out=out, resume=True)


def test_an_interrupt_is_recorded_then_resumed(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def stop_on_the_fourth(spec, device, config):
        calls.append(spec.key)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) while timing the fourth kernel
        return _fake_result()

    monkeypatch.setattr(runner, "_run_spec", stop_on_the_fourth)
    out = tmp_path / "b.json"
    with pytest.raises(KeyboardInterrupt):
        run_bench(device="cpu", mode="tiny", out=out, progress=False)
    doc = load_document(out)
    assert len(doc["measurements"]) == 3
    assert doc["run"]["stopped"] == f"interrupted after 3 of {len(TINY_KEYS)} measurements"
    session = doc["run"]["sessions"][0]
    assert session["measured"] == 3 and "ended" in session
    run_bench(device="cpu", mode="tiny", out=out, resume=True, progress=False)
    doc = load_document(out)
    assert doc["run"]["complete"] and doc["run"]["stopped"] is None
    assert sorted(r["key"] for r in doc["measurements"]) == sorted(TINY_KEYS)


def test_resume_takes_the_lock_before_reading(tmp_path: Path, fake_kernels: list[str]) -> None:
    from shapewise.bench.store import BenchStore

    out = tmp_path / "b.json"
    run_bench(device="cpu", mode="tiny", out=out, budget_seconds=1e-9, progress=False)
    other = BenchStore.open(out, lock=True)  # another run is writing this file
    with pytest.raises(InputError, match="another shapewise bench is writing this file"):
        run_bench(device="cpu", mode="tiny", out=out, resume=True, progress=False)
    other.release()
    with pytest.raises(InputError, match="mode"):  # a refused resume gives the lock back
        run_bench(device="cpu", mode="quick", out=out, resume=True, progress=False)
    run_bench(device="cpu", mode="tiny", out=out, resume=True, progress=False)
    assert load_document(out)["run"]["complete"]


def test_a_device_failure_stops_the_sweep_and_keeps_what_was_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shapewise.errors import DeviceFailure

    calls = []

    def crash_on_the_third(spec, device, config):
        calls.append(spec.key)
        if len(calls) == 3:  # what torch raises after an illegal memory access
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return _fake_result()

    monkeypatch.setattr(runner, "_run_spec", crash_on_the_third)
    out = tmp_path / "b.json"
    with pytest.raises(DeviceFailure, match="illegal memory access"):
        run_bench(device="cpu", mode="tiny", out=out, progress=False)
    doc = load_document(out)
    recs = doc["measurements"]
    assert len(recs) == 3 and len(calls) == 3
    assert [r["status"] for r in recs] == ["ok", "ok", "skipped"]
    assert recs[2]["reason"].startswith("device failure: RuntimeError: CUDA error")
    assert doc["run"]["stopped"].startswith(
        f"device failure at measurement 3 of {len(TINY_KEYS)}")
    # a resume (a new process, a fresh context) goes on past the kernel that failed
    calls.clear()
    monkeypatch.setattr(runner, "_run_spec", lambda spec, device, config: _fake_result())
    run_bench(device="cpu", mode="tiny", out=out, resume=True, progress=False)
    doc = load_document(out)
    assert doc["run"]["complete"] and doc["measurements"][2] == recs[2]


def test_resume_measures_errors_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def flaky(spec, device, config):
        if spec.kind == "bmm":
            raise ZeroDivisionError("boom")
        return _fake_result()

    monkeypatch.setattr(runner, "_run_spec", flaky)
    out = tmp_path / "b.json"
    with pytest.warns(UserWarning, match="boom"):
        run_bench(device="cpu", mode="tiny", out=out, progress=False)
    errors = [r["key"] for r in load_document(out)["measurements"]
              if r["reason"].startswith("error:")]
    assert errors
    monkeypatch.setattr(runner, "_run_spec", lambda spec, device, config: _fake_result(2e-3))
    run_bench(device="cpu", mode="tiny", out=out, resume=True, progress=False)
    recs = {r["key"]: r for r in load_document(out)["measurements"]}
    assert len(recs) == len(TINY_KEYS)
    assert all(recs[k]["status"] == "ok" and recs[k]["median_s"] == 2e-3 for k in errors)


def test_which_errors_are_device_failures() -> None:
    from shapewise.kernels import is_device_failure

    assert is_device_failure(RuntimeError("CUDA error: an illegal memory access"))
    assert is_device_failure(RuntimeError("HIP error: hipErrorLaunchFailure"))
    assert not is_device_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to ..."))
    assert not is_device_failure(RuntimeError("CUDA error: out of memory"))
    assert not is_device_failure(ValueError("head_dim 300 is not supported"))
    # a library refusing a call is reported as "CUDA error" too, but the context is fine
    assert not is_device_failure(RuntimeError(
        "CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasGemmEx( handle, ...`"))


def test_sigterm_is_an_interrupt_while_measuring() -> None:
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), runner._sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no CUDA or ROCm GPU"):
        run_bench(device="cuda", out=tmp_path / "b.json")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA or ROCm GPU")
def test_tiny_run_on_gpu(tmp_path: Path) -> None:
    out = run_bench(device="cuda:0", mode="tiny", out=tmp_path / "gpu.json", progress=False)
    doc = load_document(out)
    assert doc["run"]["complete"]
    assert doc["provenance"]["runtime"] in ("cuda", "rocm")
    assert doc["provenance"]["device_info"]["sm_count"] > 0
    ok = [r for r in doc["measurements"] if r["status"] == "ok"]
    assert len(ok) >= len(doc["measurements"]) - 1
