"""kernels/timing.py: the CPU path here, the device-event path on a GPU."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from shapewise.kernels import timing  # noqa: E402
from shapewise.kernels.timing import Timing, TimingConfig, time_fn  # noqa: E402

HAS_GPU = torch.cuda.is_available()
FAST = TimingConfig(cpu_min_run_time_s=0.01, cpu_max_run_time_s=0.05)


def test_cpu_timing_measures_a_sleep() -> None:
    t = time_fn(lambda: time.sleep(0.002), device="cpu", config=FAST)
    assert isinstance(t, Timing)
    assert 0.0019 < t.median_s < 0.02
    assert t.n_runs >= 4 and t.spread_s >= 0
    assert t.method == "torch.utils.benchmark"


def test_refresh_runs_before_cpu_timing() -> None:
    calls: list[str] = []
    time_fn(lambda: calls.append("fn"), device="cpu", refresh=lambda: calls.append("refresh"),
            config=FAST)
    assert calls[0] == "refresh" and calls[1] == "fn"


def test_rejects_unknown_device() -> None:
    with pytest.raises(ValueError, match="device"):
        time_fn(lambda: None, device="tpu")


def test_config_validates() -> None:
    with pytest.raises(ValueError, match="rep_ms"):
        TimingConfig(rep_ms=0)
    with pytest.raises(ValueError, match="min_runs"):
        TimingConfig(min_runs=5, max_runs=2)


def test_is_gpu() -> None:
    assert timing.is_gpu("cuda") and timing.is_gpu("cuda:1")
    assert not timing.is_gpu("cpu")


def test_device_info_on_cpu_names_the_runtime() -> None:
    info = timing.device_info("cpu")
    assert info["runtime"] in ("cpu", "cuda", "rocm")
    assert "name" not in info


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA or ROCm GPU")
def test_gpu_timing_with_events_and_flush() -> None:
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    refreshed = []
    t = time_fn(lambda: a @ a, device="cuda", refresh=lambda: refreshed.append(1),
                config=TimingConfig(warmup_ms=5, rep_ms=20))
    assert t.method == "cuda-events"
    assert t.n_runs >= 10 and len(refreshed) >= t.n_runs
    # 2·4096³ FLOPs: no GPU does that in under 50 µs or over 1 s
    assert 5e-5 < t.median_s < 1.0
    info = timing.device_info("cuda:0")
    assert info["sm_count"] > 0 and info["name"]


def _fake_jiffies(monkeypatch: pytest.MonkeyPatch, readings: list[tuple[int, int]]) -> None:
    it = iter(readings)
    monkeypatch.setattr(timing, "_cpu_jiffies", lambda: next(it))


def test_contended_cpu_timing_is_timed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # first attempt: other processes took 10 000 jiffies (about 100 cores' worth); then none
    _fake_jiffies(monkeypatch, [(0, 0), (10_000, 0), (10_000, 0), (10_000, 0)])
    t = time_fn(lambda: None, device="cpu",
                config=TimingConfig(cpu_min_run_time_s=0.01, cpu_max_run_time_s=0.02,
                                    cpu_retry_wait_s=0))
    assert t.attempts == 2 and t.contention is not None


def test_contention_retries_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_jiffies(monkeypatch, [(0, 0), (10_000, 0)])
    t = time_fn(lambda: None, device="cpu",
                config=TimingConfig(cpu_min_run_time_s=0.01, cpu_max_run_time_s=0.02,
                                    cpu_retries=0))
    assert t.attempts == 1 and t.contention is not None and t.contention > 1
