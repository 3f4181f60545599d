"""Many workers, one study: worker processes share a study through a journal file, SQLite
and PostgreSQL; a worker killed mid-trial leaves a study that another worker finishes.

The workers run ``tests/tune/_worker.py`` with a fake measurement (a sleep per trial), so
these tests exercise the coordination, not torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

WORKER = Path(__file__).with_name("_worker.py")
BASE = {"params": 20e6, "gpu": "h100", "arch": "llama", "seq_len": 128, "vocab_size": 8192,
        "device": "cpu", "heartbeat_s": 0.5,
        "prune_margin": 0.9}  # every finalist is measured (test_tuning.TINY says why)
TIMEOUT_S = 180


def _start(**kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), json.dumps({**BASE, **kw})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _load(storage: str, study: str) -> optuna.Study:
    import shapewise.tuning as tuning

    return optuna.load_study(study_name=study, storage=tuning.open_storage(storage))


def _two_workers(storage: str) -> None:
    study = f"two-{uuid.uuid4().hex[:8]}"
    n, k = 8, 4
    procs = [_start(study=study, storage=storage, top_k=k, n_trials=n,
                    fake={"sleep_s": 0.3}) for _ in range(2)]
    reports = [_finish(p) for p in procs]

    mine = [set(r["this_worker"]) for r in reports]
    assert not mine[0] & mine[1], "a trial was measured by both workers"
    assert mine[0] | mine[1] == set(range(n)), "a trial was lost"
    trials = _load(storage, study).get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == n
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for r in reports:  # both report the whole study: the last one waited for the other
        assert r["trial_states"]["complete"] == n
        assert [c["state"] for c in r["candidates"]] == ["complete"] * k
        assert all(len(c["trials"]) == n // k for c in r["candidates"])


def test_two_workers_share_a_journal_file(tmp_path: Path) -> None:
    _two_workers(str(tmp_path / "study.log"))


def test_two_workers_share_sqlite(tmp_path: Path) -> None:
    _two_workers(f"sqlite:///{tmp_path / 'study.db'}")


def _postgres_url() -> str:
    url = os.environ.get("SHAPEWISE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):  # .ci/run starts the server: a skip there would hide a failure
            pytest.fail("CI without SHAPEWISE_TEST_POSTGRES_URL: scripts/ci_postgres.sh failed?")
        pytest.skip("SHAPEWISE_TEST_POSTGRES_URL is not set (scripts/ci_postgres.sh)")
    return url


@pytest.mark.postgres
def test_two_workers_share_postgresql() -> None:
    _two_workers(_postgres_url())


def _wait_running(storage: str, study: str, pid: int) -> int:
    """The number of the trial process ``pid`` is measuring, once it is measuring one."""
    import shapewise.tuning as tuning

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            st = _load(storage, study)
        except KeyError:
            time.sleep(0.2)
            continue
        for t in st.get_trials(states=(TrialState.RUNNING,)):
            owner = t.system_attrs.get(tuning.liveness.OWNER)
            if owner and owner.get("pid") == pid and owner.get("trial") == t.number:
                return t.number
        time.sleep(0.2)
    raise AssertionError("the first worker never started a trial")


@pytest.mark.parametrize("kind", ["journal", "sqlite",
                                  pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("detect", ["pid", "heartbeat"])
def test_sigkill_mid_trial_then_resume(tmp_path: Path, kind: str, detect: str) -> None:
    import shapewise.tuning as tuning

    storage = {"journal": lambda: str(tmp_path / "s.log"),
               "sqlite": lambda: f"sqlite:///{tmp_path / 's.db'}",
               "postgres": _postgres_url}[kind]()
    study, n = f"killed-{uuid.uuid4().hex[:8]}", 3
    first = _start(study=study, storage=storage, top_k=n,
                   fake={"slow_first_s": 120, "remote": detect == "heartbeat"})
    try:
        killed = _wait_running(storage, study, first.pid)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.communicate(timeout=30)  # reap: a zombie would still answer kill(pid, 0)

    st = _load(storage, study)  # still loadable, and the trial is not complete
    assert st.trials[killed].state == TrialState.RUNNING
    assert sum(t.state == TrialState.COMPLETE for t in st.trials) == 0

    report = _finish(_start(study=study, storage=storage, fake={"sleep_s": 0.1}))
    trials = _load(storage, study).get_trials()
    assert trials[killed].state == TrialState.FAIL
    why = trials[killed].system_attrs.get(tuning.liveness.WHY_FAILED, "")
    if detect == "pid":  # same host: the dead process is seen at once
        assert "is gone" in why
    elif kind == "journal":  # our heartbeat (JournalStorage has none of its own)
        assert "no heartbeat" in why
    else:  # Optuna's heartbeat failed it (fail_stale_trials), not our PID check
        assert why == ""
    assert sum(t.state == TrialState.COMPLETE for t in trials) == n
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert report["trial_states"] == {"complete": n, "pruned": 0, "fail": 1, "running": 0,
                                      "waiting": 0}
    assert [c["state"] for c in report["candidates"]] == ["complete"] * n


def test_restarted_worker_continues_without_options(tmp_path: Path) -> None:
    """A worker started with only --storage and --study takes the study's options."""
    storage = str(tmp_path / "s.log")
    first = _finish(_start(study="s", storage=storage, top_k=3, n_trials=6, wait=False,
                           fake={"sleep_s": 0.05}))
    assert first["trial_states"]["complete"] == 6
    again = _finish(subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps({"study": "s", "storage": storage,
                                                  "device": "cpu", "fake": {}})],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    assert again["this_worker"] == [] and again["trial_states"]["complete"] == 6
    assert again["config"]["top_k"] == 3
