"""Worker liveness: who owns a running trial, its heartbeat, and what happens when the
worker dies.

A worker whose process dies mid-trial leaves that trial RUNNING. Every worker, before each
claim and while it waits, fails such trials and enqueues a retry of each (Optuna's
``RetryHeartbeatStaleTrialCallback``, at most ``MAX_RETRY`` times):

- on the same host and PID namespace, a trial whose owner process is gone is failed at
  once;
- an RDB storage (SQLite, PostgreSQL) uses Optuna's heartbeat: each running trial records a
  heartbeat every ``heartbeat_s``, and ``optuna.storages.fail_stale_trials`` fails the
  ones silent for the grace period (3 heartbeats);
- a journal file has no heartbeat in Optuna (``JournalStorage`` is not a
  ``BaseHeartbeat``), so workers write one as a trial system attribute, and a trial silent
  for the grace period is failed the same way (wall clocks of the hosts must agree to
  within it).

The claim of a WAITING trial is the storage's own WAITING → RUNNING transition (a row lock
in PostgreSQL, ``BEGIN IMMEDIATE`` in SQLite, the file lock and log order of a journal), so
two workers never measure the same trial.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from shapewise.tuning.storage import grace_s, retry_callback

#: trial system attributes: the worker that runs it, its heartbeat, why it was failed
OWNER = "shapewise:owner"
BEAT = "shapewise:heartbeat"
WHY_FAILED = "shapewise:failed"
#: seconds between looks at the study while waiting for other workers
POLL_S = 1.0


def host_id() -> dict[str, Any]:
    """This process's host and PID namespace: PIDs compare only within both."""
    ns = None
    with contextlib.suppress(OSError):
        ns = os.readlink("/proc/self/ns/pid")
    return {"host": socket.gethostname(), "pidns": ns}


def proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (tells a reused PID apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_gone(owner: Mapping[str, Any]) -> bool:
    """True when ``owner`` ran on this host and namespace and its process is gone (or a
    zombie, or its PID now belongs to another process)."""
    here = host_id()
    if owner.get("host") != here["host"] or here["pidns"] is None or owner.get(
            "pidns") != here["pidns"]:
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state in ("Z", "X"):
        return True
    start = owner.get("pid_start")
    return start is not None and proc_start(pid) != start


class Heartbeat:
    """A daemon thread that calls ``beat()`` every ``interval_s`` while a trial runs."""

    def __init__(self, beat: Callable[[], None], interval_s: float) -> None:
        self._beat = beat
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shapewise-heartbeat",
                                        daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # a missed beat; the next one may land
                self._beat()

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(slots=True)
class StudyContext:
    """What a worker needs to talk to the study: claim a trial, beat for it, and fail the
    trials of dead workers."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    study_id: int
    heartbeat_s: float
    is_rdb: bool

    @property
    def grace_s(self) -> float:
        return grace_s(self.heartbeat_s, rdb=self.is_rdb)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def beat(self, trial_id: int, number: int) -> Callable[[], None]:
        if self.is_rdb:
            return lambda: self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        return lambda: self.storage.set_trial_system_attr(
            trial_id, BEAT, {"trial": number, "t": time.time()})

    def reap(self) -> list[int]:
        """Fail the trials of dead workers and enqueue their retries; their numbers."""
        failed: list[int] = []
        # first the workers known dead (same host, process gone: at once, with the reason),
        # then, on an RDB storage, Optuna's heartbeat for the rest (other hosts)
        now = time.time()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            why = self._dead(t, now)
            if why and self._fail(t.number, why):
                failed.append(t.number)
        if self.is_rdb:
            before = {t.number for t in self.study.get_trials(
                deepcopy=False, states=(TrialState.RUNNING,))}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # retries through the callback
            after = {t.number for t in self.study.get_trials(
                deepcopy=False, states=(TrialState.FAIL,))}
            failed += sorted(before & after)
        return failed

    def _dead(self, t: FrozenTrial, now: float) -> str:
        owner = t.system_attrs.get(OWNER)
        # attributes copied into a retry name the original trial: only this trial's count
        if isinstance(owner, Mapping) and owner.get("trial") == t.number and process_gone(
                owner):
            return f"its worker (pid {owner.get('pid')} on {owner.get('host')}) is gone"
        if self.is_rdb:
            return ""  # Optuna's heartbeat covers the rest
        beat = t.system_attrs.get(BEAT)
        seen = t.datetime_start.timestamp() if t.datetime_start else now
        if isinstance(beat, Mapping) and beat.get("trial") == t.number:
            seen = max(seen, float(beat.get("t", 0.0)))
        if now - seen > self.grace_s:
            return f"no heartbeat for {now - seen:.0f} s (grace {self.grace_s:.0f} s)"
        return ""

    def _fail(self, number: int, why: str) -> bool:
        """FAIL trial ``number`` and enqueue its retry; False if another worker did first."""
        tid = self.trial_id(number)
        try:
            self.storage.set_trial_system_attr(tid, WHY_FAILED, why)
            if not self.storage.set_trial_state_values(tid, TrialState.FAIL):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        retry_callback()(self.study, self.storage.get_trial(tid))
        return True

    def claim(self) -> int | None:
        """Move one WAITING trial to RUNNING for this worker; its id, or None."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            tid = self.trial_id(t.number)
            try:
                if self.storage.set_trial_state_values(tid, TrialState.RUNNING):
                    return tid
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None


def claims(ctx: StudyContext, *, wait: bool, say: Callable[[str], None]) -> Iterator[int]:
    """The trial ids this worker claims, one at a time, until none is left.

    Before each claim the trials of dead workers are failed and retried. With nothing to
    claim, it waits for the trials other workers run (or for them to be failed and retried)
    unless ``wait`` is False.
    """
    waiting_said = False
    while True:
        for number in ctx.reap():
            say(f"trial {number} failed with its worker; a retry is enqueued")
        tid = ctx.claim()
        if tid is not None:
            yield tid
            continue
        left = ctx.study.get_trials(deepcopy=False,
                                    states=(TrialState.RUNNING, TrialState.WAITING))
        if not left or not wait:
            return
        if not waiting_said:
            say(f"waiting for {len(left)} trial(s) of other workers")
            waiting_said = True
        time.sleep(min(POLL_S, ctx.heartbeat_s))
