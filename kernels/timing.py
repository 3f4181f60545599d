"""The one place that times a kernel, and the one place in kernels/ that asks torch.cuda.

GPU (CUDA, and ROCm, whose torch builds answer through ``torch.cuda`` too), after
``triton.testing.do_bench`` and mamf-finder:

1. one call outside the timing (module load, run-time compilation, handle creation);
2. an estimate of one call from 3 timed calls, which sets how many to warm up and time;
3. warm-up calls, back to back (clocks up, caches of the allocator and BLAS heuristics warm);
4. each timed call: ``refresh()`` draws fresh random inputs in place, the L2 (and the
   Infinity Cache of an MI300X) is flushed by zeroing a buffer larger than it, then a pair of
   device events brackets the call alone. The events sit on the stream, so neither the
   refresh nor the flush is in the interval, and a busy stream hides the host's launch cost;
5. the median of the per-call times, with the interquartile range as the spread.

CPU: ``torch.utils.benchmark.Timer.adaptive_autorange``, which picks a block size that makes
the timer's own cost negligible and repeats blocks until the interquartile range is under
``cpu_threshold`` of the median (or ``cpu_max_run_time_s`` runs out). The median is over the
per-call means of the blocks; ``n_runs`` counts every timed call. The inputs are drawn once
per measurement, and small ones stay in the CPU caches between calls, as they would in a
training step that reuses its weights. On Linux the CPU time other processes (and the
hypervisor) took during the timing is read from /proc: when it exceeds
``cpu_max_contention`` cores the measurement is timed again after a pause, up to
``cpu_retries`` times, and the fastest attempt kept (other work only adds time). The
contention of the kept attempt is reported with it.

Never change clocks or other device settings here: the card is measured as found.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shapewise.errors import InputError

#: Version of the measurement method; goes into every profile's provenance. Bump it when a
#: change here (or in what a measurement counts) could move the numbers.
METHOD_VERSION = "shapewise-timing/2 (gpu: warm-up by time, device events, L2 flush, fresh " \
    "inputs, median; cpu: torch.utils.benchmark adaptive_autorange, median)"

#: most back-to-back warm-up calls of one GPU kernel (20,000 x 5 us = 100 ms)
WARMUP_MAX_CALLS = 20_000

#: Bytes zeroed between timed GPU calls to evict the caches: larger than any L2 we know
#: (H100 50 MB, B200 126 MB, MI300X 256 MB Infinity Cache), twice the largest.
FLUSH_BYTES = 512 * 1024 * 1024


def parse_device(device: str) -> str:
    """'cpu', 'cuda', 'cuda:N' (ROCm too: its torch calls AMD GPUs 'cuda'), 'gpu' -> 'cuda'."""
    d = device.strip().lower()
    if d in ("gpu", "cuda", "rocm", "hip"):
        return "cuda:0"
    if d == "cpu":
        return "cpu"
    if d.startswith("cuda:") and d[5:].isdigit():
        return d
    raise InputError(f"--device: expected cpu, cuda or cuda:N, got {device!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TimingConfig:
    """How long and how often to time (the defaults suit a sweep of hundreds of kernels)."""

    warmup_ms: float = 25.0
    """GPU: time spent in warm-up calls before timing, milliseconds (as do_bench)"""
    rep_ms: float = 100.0
    """GPU: time spent in timed calls, milliseconds (as do_bench)"""
    min_runs: int = 10
    """GPU: fewest timed calls, however slow the kernel"""
    max_runs: int = 200
    """GPU: most timed calls, however fast the kernel (each one also pays a flush)"""
    flush_l2: bool = True
    """GPU: zero a FLUSH_BYTES buffer before each timed call"""
    cpu_min_run_time_s: float = 0.05
    """CPU: time in timed blocks before the spread may stop the timing, seconds"""
    cpu_max_run_time_s: float = 0.5
    """CPU: time in timed blocks after which timing stops regardless, seconds"""
    cpu_threshold: float = 0.1
    """CPU: stop once IQR / median of the block means is under this"""
    cpu_max_contention: float = 0.3
    """CPU: cores' worth of other work (other processes, hypervisor steal) during a timing
    above which it is timed again; on a 2-core machine one busy neighbour stalls every
    2-thread BLAS call at its barrier"""
    cpu_retries: int = 2
    """CPU: extra timings of a contended measurement (the fastest is kept); 0: none"""
    cpu_retry_wait_s: float = 0.25
    """CPU: pause before timing a contended measurement again, seconds"""

    def __post_init__(self) -> None:
        for name in ("warmup_ms", "rep_ms", "cpu_min_run_time_s", "cpu_max_run_time_s",
                     "cpu_threshold"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TimingConfig.{name} must be positive, got {getattr(self, name)}")
        if not 1 <= self.min_runs <= self.max_runs:
            raise ValueError("TimingConfig: need 1 <= min_runs <= max_runs")
        if self.cpu_retries < 0 or self.cpu_retry_wait_s < 0 or self.cpu_max_contention < 0:
            raise ValueError("TimingConfig: cpu_retries, cpu_retry_wait_s and "
                             "cpu_max_contention must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    median_s: float
    """median time of one call, seconds"""
    spread_s: float
    """interquartile range of the per-call times, seconds"""
    n_runs: int
    """timed calls"""
    method: str
    """'cuda-events' or 'torch.utils.benchmark'"""
    contention: float | None = None
    """CPU: average cores' worth of other work while timing (None: unknown, or a GPU)"""
    attempts: int = 1
    """CPU: timings made (more than 1 when other work contended)"""


def is_gpu(device: str) -> bool:
    """True for 'cuda' and 'cuda:N' (ROCm builds of torch use the same names)."""
    return device == "cuda" or device.startswith("cuda:")


def time_fn(
    fn: Callable[[], Any],
    *,
    device: str,
    refresh: Callable[[], None] | None = None,
    config: TimingConfig | None = None,
) -> Timing:
    """Time ``fn()`` on ``device`` ('cpu', 'cuda', 'cuda:N').

    ``refresh`` (optional) redraws the inputs in place; on a GPU it runs before every timed
    call, outside the timed interval; on the CPU once, before timing.

    >>> import torch
    >>> a = torch.randn(64, 64)
    >>> t = time_fn(lambda: a @ a, device="cpu")
    >>> t.median_s > 0 and t.n_runs > 0
    True
    """
    cfg = config or TimingConfig()
    if is_gpu(device):
        return _time_gpu(fn, device=device, refresh=refresh, cfg=cfg)
    if device != "cpu":
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return _time_cpu(fn, refresh=refresh, cfg=cfg)


# ----------------------------------------------------------------------------------- CPU
def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy jiffies of all CPUs, jiffies of this process), from /proc; None elsewhere.

    Busy counts user, nice, system, irq, softirq and steal (time the hypervisor gave to
    another guest), so "busy minus ours" is what other work took from the cores.
    """
    try:
        with open("/proc/stat", encoding="ascii") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
        with open("/proc/self/stat", encoding="ascii") as f:
            text = f.read()
    except (OSError, ValueError):
        return None
    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) "
    busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + vals[7]
    return busy, int(fields[11]) + int(fields[12])  # utime + stime, all threads


def _jiffy_hz() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover
        return 100.0


def _time_cpu(fn: Callable[[], Any], *, refresh: Callable[[], None] | None,
              cfg: TimingConfig) -> Timing:
    import torch
    from torch.utils.benchmark import Timer

    if refresh is not None:
        refresh()
    fn()  # warm-up: first-call allocations, oneDNN/MKL primitive creation
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    best: Timing | None = None
    for attempt in range(1 + cfg.cpu_retries):
        if attempt:
            time.sleep(cfg.cpu_retry_wait_s)  # let the other work pass
        j0, t0 = _cpu_jiffies(), time.perf_counter()
        m = timer.adaptive_autorange(
            threshold=cfg.cpu_threshold,
            min_run_time=cfg.cpu_min_run_time_s,
            max_run_time=cfg.cpu_max_run_time_s,
        )
        wall, j1 = time.perf_counter() - t0, _cpu_jiffies()
        contention = None
        if j0 is not None and j1 is not None and wall > 0:
            others = (j1[0] - j0[0]) - (j1[1] - j0[1])
            contention = max(0.0, others / _jiffy_hz() / wall)
        times = list(m.times)  # per-call means of each block
        timing = Timing(
            median_s=float(m.median),
            spread_s=_iqr(times),
            n_runs=len(times) * int(m.number_per_run),
            method="torch.utils.benchmark",
            contention=contention,
            attempts=attempt + 1,
        )
        # other work only ever adds time: keep the fastest attempt
        if best is None or timing.median_s < best.median_s:
            best = dataclasses.replace(timing, attempts=attempt + 1)
        else:
            best = dataclasses.replace(best, attempts=attempt + 1)
        if contention is None or contention <= cfg.cpu_max_contention:
            break
    assert best is not None
    return best


# ----------------------------------------------------------------------------------- GPU
_flush_buffers: dict[str, Any] = {}


def _flush_buffer(device: str) -> Any:
    """A FLUSH_BYTES int32 buffer on ``device``, allocated once per device."""
    import torch

    key = str(torch.device(device))
    if key not in _flush_buffers:
        _flush_buffers[key] = torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device=device)
    return _flush_buffers[key]


def _time_gpu(fn: Callable[[], Any], *, device: str, refresh: Callable[[], None] | None,
              cfg: TimingConfig) -> Timing:
    import torch

    dev = torch.device(device)
    with torch.cuda.device(dev):
        fn()  # compile, load modules, create handles: never timed
        torch.cuda.synchronize(dev)
        flush = _flush_buffer(device) if cfg.flush_l2 else None

        def timed_calls(n: int) -> list[float]:
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
            for i in range(n):
                if refresh is not None:
                    refresh()
                if flush is not None:
                    flush.zero_()
                starts[i].record()
                fn()
                ends[i].record()
            torch.cuda.synchronize(dev)
            return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends, strict=True)]

        estimate_s = max(statistics.median(timed_calls(3)), 1e-7)
        # warm-up runs the kernel back to back for warmup_ms (clocks up, caches and
        # handles made); its cap is well above max_runs so a 5 us kernel still gets it
        n_warmup = min(WARMUP_MAX_CALLS, max(1, int(cfg.warmup_ms / 1e3 / estimate_s)))
        for _ in range(n_warmup):
            fn()
        n_rep = min(cfg.max_runs, max(cfg.min_runs, int(cfg.rep_ms / 1e3 / estimate_s)))
        times = timed_calls(n_rep)
    return Timing(
        median_s=statistics.median(times),
        spread_s=_iqr(times),
        n_runs=len(times),
        method="cuda-events",
    )


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return max(0.0, q3 - q1)


# ----------------------------------------------------------------------- device queries
def gpu_available() -> bool:
    """True when torch sees a CUDA or ROCm GPU (False when torch is missing)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(device: str | None) -> str:
    """The device to measure on: ``device`` as :func:`parse_device` reads it, by default the
    first GPU when torch sees one, else the CPU. InputError naming --device when the GPU
    asked for is not here."""
    dev = parse_device(device) if device is not None else (
        "cuda:0" if gpu_available() else "cpu")
    if is_gpu(dev):
        if not gpu_available():
            raise InputError(f"--device {dev}: torch sees no CUDA or ROCm GPU here "
                             "(use --device cpu)")
        if int(dev.split(":")[1]) >= gpu_count():
            raise InputError(f"--device {dev}: only {gpu_count()} GPU(s) visible")
    return dev


def synchronize(device: str) -> None:
    if is_gpu(device):
        import torch

        torch.cuda.synchronize(torch.device(device))


def release_memory(device: str) -> None:
    """Return cached blocks to the driver (after an out-of-memory error)."""
    gc.collect()
    if is_gpu(device):
        import torch

        torch.cuda.empty_cache()


def device_info(device: str) -> dict[str, Any]:
    """What torch knows about ``device``: name, SM/CU count, memory, L2, arch, runtime.

    Reads properties only; changes nothing.
    """
    import torch

    build = "rocm" if torch.version.hip else ("cuda" if torch.version.cuda else "cpu")
    info: dict[str, Any] = {
        "torch_device": device,
        "runtime": build if is_gpu(device) else "cpu",
        "torch_build": build,
    }
    if not is_gpu(device):
        return info
    dev = torch.device(device)
    props = torch.cuda.get_device_properties(dev)
    info.update(
        name=props.name,
        sm_count=int(props.multi_processor_count),
        total_memory_bytes=int(props.total_memory),
        compute_capability=f"{props.major}.{props.minor}",
        l2_cache_bytes=int(getattr(props, "L2_cache_size", 0)) or None,
        arch=getattr(props, "gcnArchName", None) or f"sm_{props.major}{props.minor}",
        device_index=dev.index if dev.index is not None else torch.cuda.current_device(),
        uuid=str(getattr(props, "uuid", "") or "") or None,
    )
    return info
