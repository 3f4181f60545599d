"""One trial: measure one candidate on this worker's device, with pruning.

A trial builds the candidate's real transformer block and head with torch
(:mod:`shapewise.kernels.block`), times forward plus backward (:mod:`shapewise.kernels.timing`:
warm-up, device events, fresh inputs, L2 flush, median), and reports one intermediate value
per timing repeat.

**Pruning.** A trial is pruned when, after ``PRUNE_AFTER`` repeats, even its best repeat is
under ``(1 − prune_margin)`` of the best finished trial: with the default 0.5, a candidate
at less than half the best is hopeless, and two repeats already say so. The best repeat,
not the median, decides because interference only ever slows a measurement down: one
disturbed repeat cannot prune a good candidate. A pruned candidate keeps its partial
measurement (the median of its repeats) and stays in the ranking.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from shapewise.bench.provenance import cpu_info
from shapewise.errors import InputError
from shapewise.kernels.timing import (
    TimingConfig,
    device_info,
    is_gpu,
    release_memory,
)
from shapewise.model.shape import ModelShape
from shapewise.tuning import liveness
from shapewise.tuning.liveness import StudyContext
from shapewise.tuning.storage import first_line, retry_callback
from shapewise.tuning.study import tokens_per_s

#: timing repeats per trial: one per intermediate value the pruner sees
DEFAULT_REPEATS = {"gpu": 5, "cpu": 3}
#: a trial whose best repeat is under (1 - margin) × the best finished trial, after
#: PRUNE_AFTER repeats, is pruned
PRUNE_MARGIN = 0.5
PRUNE_AFTER = 2
#: trial user attribute holding what a trial measured
MEASURED = "measured"


class HopelessPruner(optuna.pruners.BasePruner):
    """Prune a trial whose best intermediate value is under ``(1 − margin)`` × the best
    finished trial's value, once it has ``min_steps`` of them (see the module doc)."""

    def __init__(self, margin: float = PRUNE_MARGIN, min_steps: int = PRUNE_AFTER) -> None:
        if not 0 < margin < 1:
            raise InputError(f"prune_margin: must be in (0, 1), got {margin!r}")
        self.margin = margin
        self.min_steps = min_steps

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        values = list(trial.intermediate_values.values())
        if len(values) < self.min_steps:
            return False
        done = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None]
        if not done:
            return False
        return max(values) < (1 - self.margin) * max(done)


def _measure(shape: ModelShape, *, micro_batch: int, seq_len: int, tp: int, device: str,
             dtype: str, repeats: int) -> Iterator[Any]:
    """Timings of one block and the head, one ``StepTiming`` per repeat (tests replace this
    to run the study machinery without torch)."""
    from shapewise.kernels.block import step_timings

    if is_gpu(device):
        cfg = TimingConfig(warmup_ms=25, rep_ms=100, min_runs=10, max_runs=100)
    else:
        cfg = TimingConfig(cpu_min_run_time_s=0.05, cpu_max_run_time_s=0.3,
                           cpu_threshold=0.1)
    return step_timings(shape, micro_batch=micro_batch, seq_len=seq_len, tp=tp,
                        device=device, dtype=dtype, repeats=repeats, config=cfg)


def _release(device: str) -> None:
    with contextlib.suppress(Exception):
        release_memory(device)


def _device_name(device: str) -> str:
    if device == "cpu":
        return str(cpu_info().get("model") or "CPU")
    return str(device_info(device).get("name") or device)


@dataclass(frozen=True, slots=True)
class Worker:
    """One process's part: its device, and how it measures."""

    device: str
    device_name: str
    dtype: str
    """what the device measures in: the study's dtype on a GPU (tf32 as fp32), fp32 on the
    CPU"""
    repeats: int
    heartbeat_s: float
    say: Callable[[str], None]

    @classmethod
    def on(cls, device: str, *, study_dtype: str, repeats: int | None, heartbeat_s: float,
           say: Callable[[str], None]) -> Worker:
        gpu = is_gpu(device)
        dtype = study_dtype if gpu and study_dtype != "tf32" else "fp32"
        return cls(device, _device_name(device), dtype,
                   repeats or DEFAULT_REPEATS["gpu" if gpu else "cpu"], heartbeat_s, say)


def run_trial(ctx: StudyContext, w: Worker, tid: int, cands: list[dict[str, Any]],
              config: Mapping[str, Any]) -> int:
    """Measure trial ``tid`` (its candidate, ``repeats`` times), report each repeat to the
    pruner and tell the study the result; the trial's number."""
    study = ctx.study
    trial = optuna.trial.Trial(study, tid)
    number = trial.number
    idx = trial.suggest_categorical("candidate", list(range(len(cands))))
    cand = cands[int(idx)]  # type: ignore[arg-type]
    shape = ModelShape.from_dict(cand["shape"])
    here = liveness.host_id()  # through the module: tests stand in for another host
    owner = {"trial": number, **here, "pid": os.getpid(),
             "pid_start": liveness.proc_start(os.getpid()),
             "device": w.device, "device_name": w.device_name}
    ctx.storage.set_trial_system_attr(tid, liveness.OWNER, owner)
    b, s, tp = config["micro_batch"], cand["seq_len"], config["tp"]
    L, n, budget = shape.num_hidden_layers, cand["params"], config["params"]
    blocks: list[float] = []
    heads: list[float] = []
    spreads: list[float] = []
    method = ""
    pruned = False

    def summary() -> dict[str, Any]:
        block_s, head_s = statistics.median(blocks), statistics.median(heads)
        step_s = L * block_s + head_s
        tps = tokens_per_s(step_s, b, s, tp)
        return {"block_s": block_s, "head_s": head_s, "step_s": step_s,
                "block_spread_s": statistics.median(spreads), "repeats": len(blocks),
                "tokens_per_s": tps, "score": tps * n / budget, "device": w.device,
                "device_name": w.device_name, "dtype": w.dtype, "host": here["host"],
                "method": method, "pruned": pruned}

    w.say(f"trial {number}: measuring candidate {idx} (h {shape.hidden_size}, L {L}) on "
          f"{w.device}, {w.repeats} repeat(s)")
    with liveness.Heartbeat(ctx.beat(tid, number), w.heartbeat_s):
        try:
            timings = _measure(shape, micro_batch=b, seq_len=s, tp=tp, device=w.device,
                               dtype=w.dtype, repeats=w.repeats)
            for step, t in enumerate(timings):
                blocks.append(t.block_s)
                heads.append(t.head_s)
                spreads.append(t.block_spread_s)
                method = t.method
                if w.repeats > 1:  # a CPU repeat takes seconds: say each one
                    w.say(f"trial {number}: repeat {step + 1}/{w.repeats}: block "
                          f"{t.block_s * 1e3:.3g} ms")
                tps = tokens_per_s(L * t.block_s + t.head_s, b, s, tp)
                trial.report(tps * n / budget, step)
                if trial.should_prune():
                    pruned = True
                    break
            if hasattr(timings, "close"):
                timings.close()  # frees the layers of an abandoned measurement
        except KeyboardInterrupt:
            _finish(study, trial, state=TrialState.FAIL)
            retry_callback()(study, ctx.storage.get_trial(tid))
            raise
        except Exception as exc:
            _release(w.device)
            oom = "out of memory" in str(exc).lower()
            why = ("out of memory" if oom else f"{type(exc).__name__}: {first_line(exc)}")
            with contextlib.suppress(Exception):
                ctx.storage.set_trial_user_attr(tid, "error", why)
            _finish(study, trial, state=TrialState.FAIL)
            w.say(f"trial {number}: candidate {idx} failed: {why}")
            if oom:  # the shape does not fit this device: retrying cannot help
                return number
            retry_callback()(study, ctx.storage.get_trial(tid))
            raise
        _release(w.device)
        result = summary()
        ctx.storage.set_trial_user_attr(tid, MEASURED, result)
        if pruned:
            _finish(study, trial, state=TrialState.PRUNED)
        else:
            _finish(study, trial, value=result["score"])
    w.say(f"trial {number}: candidate {idx} (h {shape.hidden_size}, L {L}): "
          f"{result['tokens_per_s']:,.0f} tok/s, block {result['block_s'] * 1e3:.3g} ms"
          + (" [pruned: hopeless]" if pruned else ""))
    return number


def _finish(study: optuna.Study, trial: optuna.trial.Trial, *, value: float | None = None,
            state: TrialState | None = None) -> None:
    """``study.tell``, tolerating a trial that another worker already failed (its
    heartbeat lapsed while this process was stalled): that result is dropped."""
    try:
        study.tell(trial, value, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        print(f"shapewise tune: trial {trial.number} was failed by another worker while "
              "this one measured it (heartbeat lapsed); its result is dropped",
              file=sys.stderr)
