"""``run_bench``: time a sweep plan on one device and save each result as it comes.

The loop, per spec of the plan (``plan.py``) not already in the results file: time it
through its kernel module (``shapewise.kernels``), then append the record and rewrite the
file atomically (``store.py``). A SIGKILL at any moment loses at most the measurement in
flight; ``resume=True`` continues from the file. An out-of-memory error, a backend that
cannot run a problem, or a missing optional package (triton, flash_attn) is recorded as
``{"status": "skipped", "reason": ...}`` and the sweep goes on. A time budget is checked
between measurements: the run stops cleanly, says so, and can be resumed.

A measurement record (the fields the fit reads)::

    key, kind ("gemm" | "bmm" | "attention" | "elementwise"), group, backend, dtype,
    m, n, k, batch [, tile]                    gemm and bmm ("blas" or "triton")
    batch, heads, kv_heads, seq_len, seq_len_kv, head_dim, causal, backward
                                               attention (backend: flash, efficient, cudnn,
                                               math, flash_attn, triton)
    op, numel, rows, cols                      elementwise
    median_s, spread_s (IQR), n_runs, flops, bytes, tflops, gbs, status ("ok" | "skipped"),
    reason ("" when ok)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shapewise.bench.plan import (
    BENCH_DTYPES,
    MODES,
    PLAN_VERSION,
    AttentionSpec,
    ElementwiseSpec,
    GemmSpec,
    Mode,
    Spec,
    Target,
    make_plan,
    spec_record,
)
from shapewise.bench.provenance import _version, collect, cpu_info, utc_now
from shapewise.bench.store import BenchStore
from shapewise.errors import DeviceFailure, InputError
from shapewise.hardware.catalog import canonical_dtype
from shapewise.kernels import Unsupported, is_device_failure, is_out_of_memory
from shapewise.kernels.attention import bench_attention
from shapewise.kernels.elementwise import bench_elementwise
from shapewise.kernels.gemm import bench_gemm
from shapewise.kernels.timing import (
    METHOD_VERSION,
    TimingConfig,
    device_info,
    parse_device,  # re-exported: the bench CLI's devices
    release_memory,
    resolve_device,
)
from shapewise.progress import Progress

__all__ = ["DeviceFailure", "parse_device", "run_bench", "timing_config"]

_now = time.monotonic  # the budget's clock (tests replace it)


def timing_config(device_kind: str, mode: str) -> Any:
    """The timing effort of each mode (see kernels/timing.py for what each field does)."""

    if device_kind == "cpu":
        return {
            "tiny": TimingConfig(cpu_min_run_time_s=0.02, cpu_max_run_time_s=0.1,
                                 cpu_threshold=0.2, cpu_retries=0),
            "quick": TimingConfig(cpu_min_run_time_s=0.05, cpu_max_run_time_s=0.4),
            "full": TimingConfig(cpu_min_run_time_s=0.1, cpu_max_run_time_s=1.0,
                                 cpu_threshold=0.05),
        }[mode]
    return {
        "tiny": TimingConfig(warmup_ms=5, rep_ms=10, min_runs=5, max_runs=20),
        "quick": TimingConfig(warmup_ms=10, rep_ms=40, min_runs=10, max_runs=100),
        "full": TimingConfig(warmup_ms=25, rep_ms=100, min_runs=10, max_runs=200),
    }[mode]


#: CPU re-timings of contended measurements allowed in one run, per mode: each costs up to
#: cpu_max_run_time_s + cpu_retry_wait_s (0.65 s in quick), so 25 add at most 16 s: a
#: quick run measured 43 s on a quiet 2-core machine and 71-87 s with a neighbour using a
#: core throughout, under the 2 minutes it must fit
CPU_RETRY_BUDGET = {"tiny": 0, "quick": 25, "full": 300}


def _say(message: str) -> None:
    print(f"shapewise bench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- measuring
def _run_spec(spec: Spec, device: str, config: Any) -> Any:
    """Time one spec through its kernel module; returns a ``BenchResult``."""
    if isinstance(spec, GemmSpec):
        if spec.backend == "triton":
            if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
                raise Unsupported("Triton kernels need a GPU")
            try:
                from shapewise.kernels import triton_matmul
            except ImportError as exc:
                raise Unsupported(f"triton not importable ({exc})") from None
            assert spec.tile is not None
            return triton_matmul.bench_triton_matmul(m=spec.m, n=spec.n, k=spec.k,
                                                     dtype=spec.dtype, device=device,
                                                     block=spec.tile, config=config)
        return bench_gemm(m=spec.m, n=spec.n, k=spec.k, batch=spec.batch, dtype=spec.dtype,
                          device=device, config=config)
    if isinstance(spec, AttentionSpec):
        return bench_attention(backend=spec.backend, problem=spec.problem, dtype=spec.dtype,
                               device=device, config=config)
    if isinstance(spec, ElementwiseSpec):
        return bench_elementwise(op=spec.op, rows=spec.rows, cols=spec.cols, dtype=spec.dtype,
                                 device=device, config=config)
    raise TypeError(f"unknown spec {spec!r}")  # pragma: no cover


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def measure(spec: Spec, *, device: str, config: Any) -> dict[str, Any]:
    """One record: the spec's fields, then the timing or why it was skipped."""

    record = spec_record(spec)
    try:
        result = _run_spec(spec, device, config)
    except Unsupported as exc:
        return {**record, **_skipped(f"unsupported: {_first_line(exc)}")}
    except Exception as exc:
        if is_device_failure(exc):
            # the caller records the spec as skipped, so a resume goes on past it
            why = f"{type(exc).__name__}: {_first_line(exc)}"
            raise DeviceFailure(f"{spec.key}: {why}",
                                record={**record, **_skipped(f"device failure: {why}")}) from exc
        if is_out_of_memory(exc):
            release_memory(device)
            return {**record, **_skipped(f"out of memory: {_first_line(exc)}")}
        # anything else is recorded too, so a long sweep survives one bad kernel; the
        # summary counts these, and the reason says what happened
        warnings.warn(f"{spec.key}: {type(exc).__name__}: {_first_line(exc)}", stacklevel=2)
        return {**record, **_skipped(f"error: {type(exc).__name__}: {_first_line(exc)}")}
    return {**record, **result.to_dict(), "status": "ok", "reason": ""}


def _skipped(reason: str) -> dict[str, Any]:
    return {"median_s": None, "spread_s": None, "n_runs": 0, "tflops": None, "gbs": None,
            "status": "skipped", "reason": reason}


def _format_result(rec: dict[str, Any]) -> str:
    if rec["status"] != "ok":
        return f"skipped ({rec['reason'][:60]})"
    t = rec["median_s"]
    rate = f"{rec['tflops']:.3g} TFLOP/s" if rec["flops"] else f"{rec['gbs']:.3g} GB/s"
    return f"{t * 1e3:.4g} ms {rate}"


# -------------------------------------------------------------------------------- the run
def _resolve(device: str | None, dtype: str | None, mode: str,
             budget_seconds: float | None) -> tuple[str, str]:
    """Check the arguments (the cheap checks before importing torch); fill the defaults."""
    if mode not in MODES:
        raise InputError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if budget_seconds is not None and not budget_seconds > 0:
        raise InputError(f"--budget-seconds: must be positive, got {budget_seconds}")
    if device is not None:
        parse_device(device)  # a typo is named before torch is asked for
    dt = None
    if dtype is not None:
        dt = canonical_dtype(dtype, field_name="--dtype")
        if dt not in BENCH_DTYPES:
            raise InputError(f"--dtype: bench measures {', '.join(BENCH_DTYPES)}, not {dtype!r}")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("bench needs torch: pip install 'shapewise[bench]'") from None
    dev = resolve_device(device)
    if dt is None:
        dt = "fp32" if dev == "cpu" else "bf16"
    return dev, dt


def run_bench(
    *,
    device: str | None = "cpu",
    dtype: str | None = None,
    mode: Mode = "quick",
    budget_seconds: float | None = None,
    out: str | os.PathLike[str],
    resume: bool = False,
    progress: bool | None = None,
    command: str | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    sm_count: int | None = None,
) -> Path:
    """Time the ``mode`` plan on ``device`` and write the results to ``out`` (JSON).

    ``device`` is 'cpu', 'cuda' or 'cuda:N' (None: cuda:0 when torch sees a GPU, else
    cpu); ``dtype`` defaults to bf16 on a GPU and fp32 on the CPU. ``budget_seconds`` stops the
    sweep between measurements once that much time went to measuring (at least one per
    run; ``resume=True`` later continues it). ``out``
    must not exist unless ``resume`` (then its finished keys are skipped; a missing file is
    simply started). ``progress``: None shows a bar when stderr is a terminal, True always,
    False never. Returns the path written.

    >>> import tempfile, pathlib, json
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "b.json"
    >>> path = run_bench(device="cpu", mode="tiny", out=out, progress=False)  # doctest: +SKIP
    """
    t0 = _now()
    out_path = Path(out)
    if not out_path.parent.is_dir():
        raise InputError(f"--out: folder {out_path.parent} does not exist")
    if out_path.exists() and not resume:
        raise InputError(f"--out: {out_path} exists; pass --resume to continue it, or remove it")
    dev, dt = _resolve(device, dtype, mode, budget_seconds)


    info = device_info(dev)
    device_kind = "cpu" if dev == "cpu" else "gpu"
    target = Target(device=device_kind, dtype=dt,
                    sm_count=int(sm_count or info.get("sm_count") or 0),
                    memory_bytes=int(info.get("total_memory_bytes") or 0))
    plan = make_plan(target, mode)
    config = timing_config(device_kind, mode)
    device_name = info.get("name") or "cpu"
    session = {"started": utc_now(), "command": command, "resumed": False}

    if resume and out_path.exists():
        store = BenchStore.open(out_path, lock=True)
        try:
            run = _resumable_run(store, out_path, device_kind, device_name, dt, mode)
        except BaseException:
            store.release()
            raise
        retried = store.drop(lambda r: r.get("status") == "skipped"
                             and str(r.get("reason", "")).startswith("error:"))
        if retried:
            _say(f"resuming {out_path}: {retried} measurement(s) that failed with an error "
                 "are measured again")
        session["resumed"] = True
        run.setdefault("sessions", []).append(session)
        run.update(mode=mode, planned=len(plan), complete=False, stopped=None)
    else:
        prov = collect(device=dev, device_info=info, command=command,
                       extra={"timing_config": _config_dict(config), "mode": mode})
        session["command"] = prov["command"]
        run = {"device": dev, "device_kind": device_kind, "device_name": device_name,
               "dtype": dt, "mode": mode, "planned": len(plan), "done": 0, "complete": False,
               "stopped": None, "sessions": [session]}
        store = BenchStore.create(out_path, provenance=prov, run=run)
    if session["command"] is None:
        session["command"] = shlex.join(sys.argv)

    with store, _sigterm_as_interrupt():
        done = store.done_keys
        todo = [s for s in plan if s.key not in done]
        n_done_before = len(plan) - len(todo)
        show = sys.stderr.isatty() if progress is None else progress
        # a sweep's log is read afterwards: one line per kernel when stderr is not a terminal
        bar = Progress(len(plan), "bench", delay=0.0, log_lines=True, enabled=show)
        if n_done_before:
            _say(f"resuming {out_path}: {n_done_before} of {len(plan)} already measured")
        stopped = None
        interrupted = False
        failure: DeviceFailure | None = None
        retries_left = CPU_RETRY_BUDGET[mode] if device_kind == "cpu" else 0
        # the budget counts measuring, not the set-up before it: each run (and each resume)
        # measures at least one kernel, so a small budget still makes progress
        t_loop = _now()
        try:
            for i, spec in enumerate(todo):
                elapsed = _now() - t_loop
                if i and budget_seconds is not None and elapsed >= budget_seconds:
                    stopped = (f"budget of {budget_seconds:g} s spent after "
                               f"{n_done_before + i} of {len(plan)} measurements")
                    break
                bar.set(n_done_before + i, spec.key)
                record = measure(spec, device=dev, config=config)
                if device_kind == "cpu" and retries_left >= 0:
                    retries_left -= record.get("attempts", 1) - 1
                    if retries_left <= 0:
                        config = dataclasses.replace(config, cpu_retries=0)
                        retries_left = -1  # spent: say nothing more
                store.add(record)
                if on_record is not None:
                    on_record(record)
                bar.set(n_done_before + i + 1, f"{spec.key} {_format_result(record)}")
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (below): keep the books, then stop
            interrupted = True
        except DeviceFailure as exc:
            failure = exc
            if exc.record is not None:
                store.add(exc.record)  # kept on resume: the sweep goes on past it
        finally:
            bar.close()
        done = store.done_keys  # (a frozenset built per access: take it once)
        measured = sum(1 for s in todo if s.key in done)
        if interrupted:
            stopped = (f"interrupted after {n_done_before + measured} of {len(plan)} "
                       "measurements")
        elif failure is not None:
            stopped = (f"device failure at measurement {n_done_before + measured} of "
                       f"{len(plan)}: {failure}")
        bandwidth = best_copy_gbs(store.measurements)
        if bandwidth:
            store.doc["provenance"].update(
                memory_bandwidth_gbs=bandwidth,
                memory_bandwidth_source="the fastest 'copy' measurement of this file "
                                        "(bytes read + written / median time)")
        missing = [s.key for s in plan if s.key not in done]
        session.update(ended=utc_now(), elapsed_s=round(_now() - t0, 1), measured=measured)
        store.update_run(complete=not missing, stopped=stopped,
                         noisy=noisy_keys(store.measurements))
    if stopped:
        _say(f"stopped: {stopped}; run again with --resume to continue")
    if interrupted:
        raise KeyboardInterrupt
    if failure is not None:
        raise failure
    return out_path


def _resumable_run(store: BenchStore, out_path: Path, device_kind: str, device_name: str,
                   dt: str, mode: str) -> dict[str, Any]:
    """The file's run record, if this run may continue it; else InputError naming what
    differs (one file holds one device's, one dtype's, one mode's measurements)."""

    run = store.run
    had_prov = store.doc["provenance"]
    checks = [("device_kind", run.get("device_kind"), device_kind),
              ("device_name", run.get("device_name"), device_name),
              ("dtype", run.get("dtype"), dt),
              # the sweep's timing effort and plan are the mode's: one file, one mode
              ("mode", run.get("mode"), mode),
              ("plan_version", had_prov.get("plan_version"), PLAN_VERSION),
              ("method_version", had_prov.get("method_version"), METHOD_VERSION),
              ("torch", had_prov.get("torch"), _version("torch"))]
    if device_kind == "cpu":  # one CPU's numbers must not be mixed with another's

        was = store.doc["provenance"].get("cpu") or {}
        now = cpu_info()
        checks += [("CPU model", was.get("model"), now["model"]),
                   ("logical CPUs", was.get("logical_cpus"), now["logical_cpus"])]
    for field, had, want in checks:
        if had != want:
            raise InputError(f"--resume: {out_path} was measured with {field} {had!r}, "
                             f"this run has {want!r}")
    return run


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``timeout``, a batch scheduler's stop) as Ctrl-C while measuring, so
    the session's end is recorded; only the main thread can own signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: a measurement whose interquartile range exceeds this fraction of its median is noisy
NOISY_SPREAD = 0.25


def noisy_keys(records: list[dict[str, Any]]) -> list[str]:
    """Keys of measurements with spread_s / median_s over ``NOISY_SPREAD``: on a CPU, most
    often other processes competing for the cores during the timing."""
    return [r["key"] for r in records
            if r.get("status") == "ok" and r.get("median_s")
            and (r.get("spread_s") or 0.0) > NOISY_SPREAD * r["median_s"]]


def best_copy_gbs(records: list[dict[str, Any]]) -> float | None:
    """The measured memory bandwidth: the best GB/s of the elementwise 'copy' records."""
    rates = [r["gbs"] for r in records if r.get("op") == "copy" and r.get("status") == "ok"
             and r.get("gbs")]
    return round(max(rates), 3) if rates else None


def _config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
