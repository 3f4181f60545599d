"""The report: the measured ranking beside the predicted one, from every worker's trials,
and the record of predicted and measured times (calibration data)."""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from shapewise._io import atomic_write_json
from shapewise.bench.provenance import collect
from shapewise.errors import InputError
from shapewise.kernels.timing import device_info
from shapewise.model.shape import ModelShape
from shapewise.search.result import shape_dims
from shapewise.tuning.liveness import WHY_FAILED
from shapewise.tuning.storage import redact
from shapewise.tuning.study import FORMAT, tokens_per_s
from shapewise.tuning.trial import MEASURED, Worker

#: a rank correlation under this means the model's ranking should not be trusted here
POOR_RHO = 0.5
#: a rank correlation over fewer finalists than this is never called good: with 3 or 4
#: points a perfect rho = 1 happens by chance once in 6 or 24 orderings
MIN_RANK_POINTS = 5


@dataclass(frozen=True, slots=True)
class TunedCandidate:
    """One finalist: its prediction beside what the hardware measured."""

    index: int
    """position in the analytic search's ranking (0: its best)"""
    shape: ModelShape
    params: int
    predicted_rank: int
    """1-based rank by predicted score among all finalists"""
    measured_rank: int | None
    """1-based rank by measured score among the measured finalists (None: not measured)"""
    predicted_step_s: float
    """predicted L · layer + head, seconds (the measured part of the estimate)"""
    predicted_layer_s: float
    predicted_tokens_per_s: float
    """tokens/s per GPU of the predicted step"""
    predicted_score: float
    """predicted tokens/s × params / budget"""
    measured_step_s: float | None
    """measured L · block + head, seconds (median over this finalist's trials)"""
    measured_layer_s: float | None
    """measured forward + backward of one block, seconds"""
    measured_head_s: float | None
    measured_tokens_per_s: float | None
    measured_score: float | None
    error: float | None
    """predicted step / measured step − 1"""
    state: str
    """'complete', 'pruned' (partial measurement), 'failed', 'running' or 'waiting'"""
    trials: tuple[int, ...]
    """numbers of the trials that measured it"""
    devices: tuple[str, ...]
    """device names its measurements ran on"""
    reason: str = ""
    """why it failed, when it did"""

    def to_dict(self) -> dict[str, Any]:
        s = self.shape
        return {
            "index": self.index, "predicted_rank": self.predicted_rank,
            "measured_rank": self.measured_rank, "state": self.state,
            **shape_dims(s), "params": self.params,
            "predicted_step_s": self.predicted_step_s,
            "predicted_layer_s": self.predicted_layer_s,
            "predicted_tokens_per_s": self.predicted_tokens_per_s,
            "predicted_score": self.predicted_score,
            "measured_step_s": self.measured_step_s, "measured_layer_s": self.measured_layer_s,
            "measured_head_s": self.measured_head_s,
            "measured_tokens_per_s": self.measured_tokens_per_s,
            "measured_score": self.measured_score, "error": self.error,
            "trials": list(self.trials), "devices": list(self.devices), "reason": self.reason,
            "shape": s.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class TuneReport:
    """The measured ranking beside the predicted one, from every worker's trials."""

    study: str
    storage: str
    """the storage URL, password hidden"""
    config: dict[str, Any]
    """what the study was created with (budget, GPU, arch, seq_len, ...)"""
    candidates: tuple[TunedCandidate, ...]
    """measured ones by measured rank, then the rest by predicted rank"""
    rho: float | None
    """Spearman rank correlation of predicted and measured scores (None: under 3 measured)"""
    trial_states: dict[str, int]
    """trials of the study by state (complete, pruned, fail, running, waiting)"""
    this_worker: tuple[int, ...]
    """trial numbers this process measured"""
    device: str
    device_name: str
    measure_dtype: str
    elapsed_s: float
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    @property
    def poor(self) -> bool:
        """True when the analytic ranking disagrees with the measured one (rho < POOR_RHO)."""
        return self.rho is not None and self.rho < POOR_RHO

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "study": self.study, "storage": self.storage,
            "config": dict(self.config), "rho": self.rho, "poor_correlation": self.poor,
            "trial_states": dict(self.trial_states), "this_worker": list(self.this_worker),
            "device": self.device, "device_name": self.device_name,
            "measure_dtype": self.measure_dtype, "elapsed_s": self.elapsed_s,
            "candidates": [c.to_dict() for c in self.candidates],
            "warnings": list(self.warnings), "notes": list(self.notes),
        }


def _spearman(pred: list[float], meas: list[float]) -> float | None:
    if len(pred) < 3:
        return None
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(spearmanr(pred, meas).statistic)
    return rho if math.isfinite(rho) else None


def _collect(study: optuna.Study, cands: list[dict[str, Any]], config: Mapping[str, Any]
             ) -> tuple[list[TunedCandidate], dict[str, int], set[str]]:
    trials = study.get_trials(deepcopy=False)
    states = {"complete": 0, "pruned": 0, "fail": 0, "running": 0, "waiting": 0}
    per: dict[int, list[FrozenTrial]] = {i: [] for i in range(len(cands))}
    for t in trials:
        key = t.state.name.lower()
        states[key] = states.get(key, 0) + 1
        idx = t.params.get("candidate", t.system_attrs.get("fixed_params", {}).get("candidate"))
        if isinstance(idx, int) and idx in per:
            per[idx].append(t)
    order = sorted(range(len(cands)), key=lambda i: -cands[i]["predicted"]["score"])
    pred_rank = {i: r + 1 for r, i in enumerate(order)}
    b, tp = config["micro_batch"], config["tp"]
    devices: set[str] = set()
    rows = []
    for i, c in enumerate(cands):
        shape = ModelShape.from_dict(c["shape"])
        ts = per[i]
        done = [t for t in ts if t.state == TrialState.COMPLETE and MEASURED in t.user_attrs]
        part = [t for t in ts if t.state == TrialState.PRUNED and MEASURED in t.user_attrs]
        use = done or part
        if done:
            state = "complete"
        elif part:
            state = "pruned"
        elif any(t.state == TrialState.RUNNING for t in ts):
            state = "running"
        elif any(t.state == TrialState.WAITING for t in ts):
            state = "waiting"
        else:
            state = "failed"
        reason = ""
        if state == "failed":
            reason = next((str(t.user_attrs.get("error") or t.system_attrs.get(WHY_FAILED))
                           for t in reversed(ts) if t.state == TrialState.FAIL), "")
        m = [t.user_attrs[MEASURED] for t in use]
        devs = tuple(sorted({str(x.get("device_name")) for x in m}))
        devices.update(devs)
        p = c["predicted"]
        meas: dict[str, float | None] = dict.fromkeys(
            ("layer", "head", "step", "tps", "score", "error"))
        if m:
            layer = statistics.median(x["block_s"] for x in m)
            head = statistics.median(x["head_s"] for x in m)
            step = shape.num_hidden_layers * layer + head
            tps = tokens_per_s(step, b, c["seq_len"], tp)
            meas = {"layer": layer, "head": head, "step": step, "tps": tps,
                    "score": tps * c["params"] / config["params"],
                    "error": p["step_s"] / step - 1}
        rows.append(TunedCandidate(
            index=i, shape=shape, params=c["params"], predicted_rank=pred_rank[i],
            measured_rank=None, predicted_step_s=p["step_s"], predicted_layer_s=p["layer_s"],
            predicted_tokens_per_s=p["tokens_per_s"], predicted_score=p["score"],
            measured_step_s=meas["step"], measured_layer_s=meas["layer"],
            measured_head_s=meas["head"], measured_tokens_per_s=meas["tps"],
            measured_score=meas["score"], error=meas["error"], state=state,
            trials=tuple(t.number for t in use), devices=devs, reason=reason))
    measured = sorted((r for r in rows if r.measured_score is not None),
                      key=lambda r: -(r.measured_score or 0.0))
    ranked = [_with_rank(r, k + 1) for k, r in enumerate(measured)]
    rest = sorted((r for r in rows if r.measured_score is None), key=lambda r: r.predicted_rank)
    return ranked + rest, states, devices


def _with_rank(r: TunedCandidate, rank: int) -> TunedCandidate:
    return dataclasses.replace(r, measured_rank=rank)

def make_report(study: optuna.Study, cands: list[dict[str, Any]], config: Mapping[str, Any],
                w: Worker, *, storage: str, mine: list[int], elapsed_s: float) -> TuneReport:
    """The report of ``study`` as it stands, seen from worker ``w``."""
    rows, states, devices = _collect(study, cands, config)
    measured = [r for r in rows if r.measured_score is not None]
    rho = _spearman([r.predicted_score for r in measured],
                    [r.measured_score for r in measured])  # type: ignore[misc]
    warns, notes = _advice(rho, rows, states, devices, config, w)
    return TuneReport(
        study=study.study_name, storage=redact(storage), config=dict(config),
        candidates=tuple(rows), rho=rho, trial_states=states, this_worker=tuple(mine),
        device=w.device, device_name=w.device_name, measure_dtype=w.dtype,
        elapsed_s=elapsed_s, warnings=tuple(warns), notes=tuple(notes))


def rank_verdict(rho: float | None, n: int) -> str:
    """'poor', 'good', or why neither: never 'good' over fewer than MIN_RANK_POINTS."""
    if rho is None:
        return "n/a"
    if rho < POOR_RHO:
        return "poor"
    return "good" if n >= MIN_RANK_POINTS else f"only {n} points: too few to call good"


def _advice(rho: float | None, rows: list[TunedCandidate], states: Mapping[str, int],
            devices: set[str], config: Mapping[str, Any], w: Worker
            ) -> tuple[list[str], list[str]]:
    warns, notes = [], []
    n = sum(r.measured_score is not None for r in rows)
    if rho is None:
        warns.append(f"{n} finalist(s) measured: a rank correlation needs at least 3 "
                     "(raise --top-k / --n-trials)")
    elif rho < POOR_RHO:
        warns.append(
            f"the analytic model ranks these finalists poorly on this device (Spearman rho "
            f"{rho:.2f} < {POOR_RHO}): trust the measured ranking, and calibrate the model "
            f"with 'shapewise bench --device {w.device}' then 'shapewise fit' before the "
            "next search (--profile)")
    elif n < MIN_RANK_POINTS:
        warns.append(f"{n} finalists measured: a rank correlation over fewer than "
                     f"{MIN_RANK_POINTS} says little (rho {rho:+.2f} could be chance); "
                     "raise --top-k / --n-trials")
    if len(devices) > 1:
        warns.append("measurements come from different devices (" + ", ".join(sorted(devices))
                     + "): their ranking mixes hardware")
    if states.get("running") or states.get("waiting"):
        notes.append(f"{states.get('running', 0)} trial(s) still running and "
                     f"{states.get('waiting', 0)} waiting in other workers: the ranking is "
                     "partial")
    failed = [r for r in rows if r.state == "failed"]
    for r in failed:
        warns.append(f"finalist {r.index} was not measured: {r.reason or 'its trials failed'}")
    if w.device == "cpu" and not str(config["gpu"]).startswith("cpu"):
        notes.append(f"measured on the CPU in fp32 while the prediction is for "
                     f"{config['gpu']} in {config['dtype']}: this checks the pipeline, not the "
                     "cost model")
    notes.append("compared: L × one block + head (final norm, logits, loss), forward + "
                 "backward, of one tensor-parallel rank; embeddings and TP all-reduces are "
                 "not measured")
    return warns, notes


def write_record(report: TuneReport, path: str | os.PathLike[str]) -> None:
    """Write the finalists' predicted and measured times with their provenance (JSON).

    Each record pairs a shape's predicted layer/head/step times with the measured ones on
    a named device: the data to judge (and refit, with 'shapewise bench' + 'shapewise fit'
    on the same device) the cost model where it matters, at the shapes the search picks.
    """

    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"record: folder {p.parent} does not exist")
    prov = collect(device=report.device, device_info=device_info(report.device),
                   extra={"study": report.study, "storage": report.storage,
                          "measure_dtype": report.measure_dtype})
    doc = {"format": "shapewise-tune-results/1", "provenance": prov,
           "config": report.config, "rho": report.rho, "trial_states": report.trial_states,
           "records": [{**c.to_dict(), "gpu": report.config["gpu"],
                        "dtype": report.config["dtype"], "measure_dtype": report.measure_dtype,
                        "micro_batch": report.config["micro_batch"], "tp": report.config["tp"]}
                       for c in report.candidates]}
    atomic_write_json(p, doc)
