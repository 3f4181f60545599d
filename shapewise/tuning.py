"""``tune()``: measure the analytic search's finalists on real hardware, with any number of
workers sharing one Optuna study through Optuna's storage.

Stage one, the analytic search (:func:`shapewise.recommend_shape`), narrows thousands of
shapes to the ``top_k`` it predicts fastest. Stage two measures each of them: a trial builds
the candidate's real transformer block and head with torch (:mod:`shapewise.kernels.block`),
times forward plus backward on the device (:mod:`shapewise.kernels.timing`: warm-up, device
events, fresh inputs, L2 flush, median), and reports what it measured.

**What is compared.** A trial times one block and the head (final norm, logits,
cross-entropy; or a ViT's classifier) of one tensor-parallel rank, and counts the step as
``L · block + head``. The prediction it is compared with is the same part of
:func:`shapewise.estimate`: the layer ops (``count`` a multiple of L) plus the head's,
leaving out what is not measured (embedding lookups, and the TP all-reduces: one GPU has no
peer). Tokens/s per GPU is ``micro_batch · seq_len / step / tp``; the trial's value is the
search's own objective, tokens/s × params / budget, so shapes a few percent apart in size
are compared at equal model size. The prediction error of a candidate is
``predicted step / measured step − 1`` (negative: the model is optimistic).

**The study.** The first worker runs stage one, creates the study, stores the candidates
(``study.user_attrs``) and enqueues exactly ``n_trials`` trials, trial *i* measuring
candidate *i mod K*. Every worker then claims WAITING trials one at a time: the claim is
the storage's own WAITING → RUNNING transition (a row lock in PostgreSQL, ``BEGIN
IMMEDIATE`` in SQLite, the file lock and log order of a journal), so two workers never
measure the same trial, and no worker creates a trial of its own: the study ends with
exactly ``n_trials`` finished trials, plus one FAIL per trial lost with a dead worker.
Later workers (or a restarted one) load the study and its candidates instead of searching.

**Pruning.** Each trial reports one intermediate value per timing repeat. A trial is
pruned when, after ``PRUNE_AFTER`` repeats, even its best repeat is under
``(1 − prune_margin)`` of the best finished trial: with the default 0.5, a candidate at less
than half the best is hopeless, and two repeats already say so. The best repeat, not the
median, decides because interference only ever slows a measurement down: one disturbed
repeat cannot prune a good candidate. A pruned candidate keeps its partial measurement
(the median of its repeats) and stays in the ranking.

**Dead workers.** A worker whose process dies mid-trial leaves that trial RUNNING. Every
worker, before each claim and while it waits, fails such trials and enqueues a retry of
each (Optuna's ``RetryHeartbeatStaleTrialCallback``, at most ``MAX_RETRY`` times):

- on the same host and PID namespace, a trial whose owner process is gone is failed at
  once;
- an RDB storage (SQLite, PostgreSQL) uses Optuna's heartbeat: each running trial records a
  heartbeat every ``heartbeat_s``, and ``optuna.storages.fail_stale_trials`` fails the
  ones silent for the grace period (3 heartbeats);
- a journal file has no heartbeat in Optuna (``JournalStorage`` is not a
  ``BaseHeartbeat``), so workers write one as a trial system attribute, and a trial silent
  for the grace period is failed the same way (wall clocks of the hosts must agree to
  within it).

A worker with nothing left to claim waits for the trials other workers are running (or
for them to be failed and retried), then reports: with ``wait=False`` it reports at once.

**Storage URLs.** ``journal:///path/file.log`` or a plain path ending in ``.log`` (the
default, ``shapewise-tune.log`` in the working folder): a :class:`JournalStorage` file, for
the workers of one node. ``sqlite:///file.db``: one node as well. ``postgresql://...``: a
cluster (needs ``psycopg2`` or ``psycopg``). docs/tuning.md shows how to run them.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import socket
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from shapewise.errors import InputError
from shapewise.model.shape import ModelShape
from shapewise.step import Estimate

if TYPE_CHECKING:  # pragma: no cover
    from shapewise.hardware.catalog import GPU

#: where the study lives when no storage is given: a journal file in the working folder
DEFAULT_STORAGE = "shapewise-tune.log"
#: finalists measured: enough to see whether the ranking holds, few enough to time each
#: one properly (a trial is a few seconds on a GPU)
DEFAULT_TOP_K = 8
#: timing repeats per trial: one per intermediate value the pruner sees
DEFAULT_REPEATS = {"gpu": 5, "cpu": 3}
#: a trial whose best repeat is under (1 - margin) × the best finished trial, after
#: PRUNE_AFTER repeats, is pruned
PRUNE_MARGIN = 0.5
PRUNE_AFTER = 2
#: seconds between heartbeats of a running trial; stale after GRACE_BEATS of them
HEARTBEAT_S = 10.0
GRACE_BEATS = 3
#: a trial lost with its worker is retried at most this often (a shape that kills its
#: worker every time must not stop the study)
MAX_RETRY = 3
#: a rank correlation under this means the model's ranking should not be trusted here
POOR_RHO = 0.5
#: seconds a joining worker waits for the study's creator to store the candidates
SETUP_TIMEOUT_S = 120.0
#: seconds between looks at the study while waiting for other workers
POLL_S = 1.0

FORMAT = "shapewise-tune/1"
_CONFIG = "shapewise:config"
_CANDIDATES = "shapewise:candidates"
_READY = "shapewise:ready"
_OWNER = "shapewise:owner"
_BEAT = "shapewise:heartbeat"
_WHY_FAILED = "shapewise:failed"
_MEASURED = "measured"

#: ops of the estimate outside the measured block and head
_UNMEASURED = frozenset({"embedding", "patch_embed"})
_HEAD_OPS = frozenset({"final_norm", "logits", "cross_entropy", "classifier"})


# ---------------------------------------------------------------------------- results
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
            "hidden_size": s.hidden_size, "num_attention_heads": s.num_attention_heads,
            "head_dim": s.head_dim, "num_key_value_heads": s.kv_heads,
            "num_hidden_layers": s.num_hidden_layers, "intermediate_size": s.ffn_size,
            "vocab_size": s.vocab_size, "params": self.params,
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


# --------------------------------------------------------------------------- predictions
def predicted_parts(est: Estimate) -> tuple[float, float]:
    """(one layer, the head) of ``est``, seconds: the part a trial measures.

    Layer: every op that runs ``count`` = a multiple of L times, except TP communication;
    head: final norm, logits, cross-entropy or classifier. Embedding lookups are left out.
    """
    L = est.shape.num_hidden_layers
    layers = head = 0.0
    for op in est.breakdown:
        if op.kind == "comm" or op.name in _UNMEASURED:
            continue
        if op.name in _HEAD_OPS:
            head += op.total_s
        else:
            if op.count % L:
                raise AssertionError(f"op {op.name}: count {op.count} is not per layer (L={L})")
            layers += op.total_s
    return layers / L, head


def _tokens_per_s(step_s: float, micro_batch: int, seq_len: int, tp: int) -> float:
    return micro_batch * seq_len / step_s / tp


# ------------------------------------------------------------------------------ storage
def _redact(url: str) -> str:
    """The URL with its password replaced by '***'."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL: hide everything between '://' and '@'
        head, rest = url.split("://", 1)
        return f"{head}://***@{rest.rsplit('@', 1)[1]}"


def _retry_callback() -> Callable[[optuna.Study, FrozenTrial], None]:
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if cls is None:  # optuna < 4.9
        cls = optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=MAX_RETRY)


def journal_path(url: str) -> str | None:
    """The journal file a ``--storage`` value names, or None for a database URL."""
    if url.startswith("journal://"):
        path = url[len("journal://"):]
        if not path:
            raise InputError("--storage: journal:// needs a file, e.g. journal:///tmp/t.log")
        return path
    if "://" in url:
        return None
    if not url.endswith(".log"):
        raise InputError(f"--storage: {url!r} is neither a database URL (sqlite:///FILE, "
                         "postgresql://...) nor a journal file (a path ending in .log, or "
                         "journal:///PATH)")
    return url


def check_journal_file(path: str) -> None:
    """An error naming ``--storage`` unless ``path`` is absent (a new journal, in a folder
    that exists) or already an Optuna journal: Optuna would append to any file, a training
    log included, and then fail on its first line."""
    p = Path(path).expanduser()
    folder = p.resolve().parent
    if not folder.is_dir():
        raise InputError(f"--storage: folder {folder} of the journal file does not exist")
    if p.is_dir():
        raise InputError(f"--storage: {path} is a folder, not a journal file")
    if not p.exists() or p.stat().st_size == 0:
        return
    try:
        with open(p, "rb") as fh:
            first = fh.readline(1 << 20)
        record = json.loads(first)
    except (OSError, ValueError) as exc:
        raise InputError(f"--storage: {path} is not an Optuna journal file (its first line "
                         f"is not a journal record: {type(exc).__name__})") from None
    if not isinstance(record, dict) or "op_code" not in record:
        raise InputError(f"--storage: {path} is not an Optuna journal file (its first line "
                         "is not a journal record)")


def open_storage(url: str | None = None, *, heartbeat_s: float = HEARTBEAT_S
                 ) -> optuna.storages.BaseStorage:
    """The Optuna storage a ``--storage`` value names (module docstring, "Storage URLs").

    RDB storages get Optuna's heartbeat (``heartbeat_s``, rounded up to whole seconds, and
    a grace period of GRACE_BEATS heartbeats) and a retry of each trial it fails.
    """
    url = DEFAULT_STORAGE if url is None else url
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"--storage: expected a URL or a path, got {url!r}")
    path = journal_path(url)
    if path is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        check_journal_file(path)
        return JournalStorage(JournalFileBackend(str(Path(path).expanduser())))
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise InputError(f"--storage: unknown scheme {scheme!r} in {_redact(url)!r}; use a "
                         "journal file (*.log), sqlite:///FILE or postgresql://...")
    if scheme == "postgres":  # SQLAlchemy knows only the long name
        url = "postgresql" + url[len("postgres"):]
    if url.startswith("postgresql://"):
        url = "postgresql+" + _postgres_driver() + url[len("postgresql"):]
    return _rdb_storage(url, scheme, heartbeat_s)


def _postgres_driver() -> str:
    """The installed PostgreSQL driver: SQLAlchemy 2.0 defaults to psycopg2, 2.1 to psycopg
    (3); naming the one that is installed works with either."""
    import importlib.util

    for module, name in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise InputError("--storage: postgresql needs a database driver: pip install "
                     "psycopg2-binary (or psycopg)")


def _rdb_storage(url: str, scheme: str, heartbeat_s: float) -> optuna.storages.RDBStorage:
    import inspect

    beat = max(1, math.ceil(heartbeat_s))
    engine: dict[str, Any] = {}
    if scheme == "sqlite":
        # the driver's own transactions off: each one begins with BEGIN IMMEDIATE below,
        # so a read-then-write (the WAITING -> RUNNING claim) cannot interleave with
        # another process's; writers queue for up to 60 s instead of failing at once
        engine = {"connect_args": {"timeout": 60, "isolation_level": None}}
    else:
        engine = {"pool_pre_ping": True}  # a long-idle worker's connection may be dropped
    kwargs: dict[str, Any] = {"heartbeat_interval": beat,
                              "grace_period": max(2 * beat, math.ceil(GRACE_BEATS * heartbeat_s))}
    sig = inspect.signature(optuna.storages.RDBStorage)
    cb_name = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
               in sig.parameters else "failed_trial_callback")
    kwargs[cb_name] = _retry_callback()
    last: Exception | None = None
    for attempt in range(6):  # two workers creating the tables at once: one loses, retries
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
            break
        except ImportError as exc:
            hint = {"postgresql": "psycopg2-binary (or psycopg)",
                    "mysql": "pymysql (with a mysql+pymysql:// URL) or mysqlclient"
                    }.get(scheme, "the driver SQLAlchemy names")
            raise InputError(f"--storage: {scheme} needs its database driver "
                             f"({exc.name or exc}): pip install {hint}") from exc
        except Exception as exc:
            if not _is_db_error(exc):
                raise
            last = exc
            time.sleep(0.2 * (attempt + 1))
    else:
        raise InputError(f"--storage: cannot open {_redact(url)}: {_first_line(last)}")
    if scheme == "sqlite":
        from sqlalchemy import event

        @event.listens_for(storage.engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return storage


def _is_db_error(exc: BaseException) -> bool:
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, SQLAlchemyError | optuna.exceptions.StorageInternalError)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------ pruning
class HopelessPruner(optuna.pruners.BasePruner):
    """Prune a trial whose best intermediate value is under ``(1 − margin)`` × the best
    finished trial's value, once it has ``min_steps`` of them (module docstring)."""

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


# ------------------------------------------------------------------------- liveness
def _host_id() -> dict[str, Any]:
    """This process's host and PID namespace: PIDs compare only within both."""
    ns = None
    with contextlib.suppress(OSError):
        ns = os.readlink("/proc/self/ns/pid")
    return {"host": socket.gethostname(), "pidns": ns}


def _proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (tells a reused PID apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _process_gone(owner: Mapping[str, Any]) -> bool:
    """True when ``owner`` ran on this host and namespace and its process is gone (or a
    zombie, or its PID now belongs to another process)."""
    here = _host_id()
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
    return start is not None and _proc_start(pid) != start


class _Heartbeat:
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

    def __enter__(self) -> _Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(slots=True)
class _Context:
    """What a worker needs to talk to the study."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    study_id: int
    heartbeat_s: float
    is_rdb: bool

    @property
    def grace_s(self) -> float:
        if self.is_rdb:
            beat = max(1, math.ceil(self.heartbeat_s))
            return max(2 * beat, math.ceil(GRACE_BEATS * self.heartbeat_s))
        return GRACE_BEATS * self.heartbeat_s

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def beat(self, trial_id: int, number: int) -> Callable[[], None]:
        if self.is_rdb:
            return lambda: self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        return lambda: self.storage.set_trial_system_attr(
            trial_id, _BEAT, {"trial": number, "t": time.time()})

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
        owner = t.system_attrs.get(_OWNER)
        # attributes copied into a retry name the original trial: only this trial's count
        if isinstance(owner, Mapping) and owner.get("trial") == t.number and _process_gone(
                owner):
            return f"its worker (pid {owner.get('pid')} on {owner.get('host')}) is gone"
        if self.is_rdb:
            return ""  # Optuna's heartbeat covers the rest
        beat = t.system_attrs.get(_BEAT)
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
            self.storage.set_trial_system_attr(tid, _WHY_FAILED, why)
            if not self.storage.set_trial_state_values(tid, TrialState.FAIL):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        _retry_callback()(self.study, self.storage.get_trial(tid))
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


# ---------------------------------------------------------------------------- the study
def _open_or_create(ctx_storage: optuna.storages.BaseStorage, name: str,
                    config: dict[str, Any], make: Callable[[], tuple[dict[str, Any],
                                                                     list[dict[str, Any]]]],
                    pruner: optuna.pruners.BasePruner, say: Callable[[str], None]
                    ) -> tuple[optuna.Study, bool]:
    """Load study ``name``, or create it with the candidates ``make()`` returns.

    Creation is first-come: ``create_study`` fails for every worker but one
    (DuplicatedStudyError), and those load the study and wait for its candidates.
    """
    sampler = optuna.samplers.RandomSampler(seed=0)  # every trial's params are fixed
    kwargs = {"study_name": name, "storage": ctx_storage, "sampler": sampler, "pruner": pruner}
    try:
        study = optuna.load_study(**kwargs)
    except KeyError:
        full, cands = make()
        try:
            study = optuna.create_study(direction="maximize", load_if_exists=False, **kwargs)
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(**kwargs)
        else:
            study.set_user_attr(_CONFIG, full)
            study.set_user_attr(_CANDIDATES, cands)
            k = len(cands)
            for i in range(full["n_trials"]):
                study.enqueue_trial({"candidate": i % k}, skip_if_exists=False)
            study.set_user_attr(_READY, True)
            say(f"study {name!r} created: {full['n_trials']} trials enqueued")
            return study, True
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    said = False
    while not study.user_attrs.get(_READY):
        if time.monotonic() > deadline:
            raise InputError(
                f"--study: {name!r} exists but its candidates never arrived (its creator died "
                "while setting it up?): delete it with 'optuna delete-study' or use another "
                "--study")
        if not said:
            say(f"waiting for the creator of study {name!r} to store its candidates")
            said = True
        time.sleep(0.2)
    _check_config(study.user_attrs[_CONFIG], config, name)
    return study, False


def _check_config(stored: Mapping[str, Any], asked: Mapping[str, Any], name: str) -> None:
    if stored.get("format") != FORMAT:
        raise InputError(f"--study: {name!r} was not made by this version of shapewise tune "
                         f"(format {stored.get('format')!r}, expected {FORMAT!r})")
    diff = [f"{k}={stored.get(k)!r} (asked {v!r})" for k, v in asked.items()
            if v is not None and stored.get(k) != v]
    if diff:
        raise InputError(f"--study: {name!r} was created with " + ", ".join(diff)
                         + ": use the same options (or leave them out) or another --study")


def _finalists(config: dict[str, Any], gpu: Any, search_trials: int | None
               ) -> list[dict[str, Any]]:
    """Stage one: the analytic search's top-k, each with its prediction of the measured part."""
    from shapewise.model.params import count_params
    from shapewise.search.recommend import recommend_shape
    from shapewise.step import estimate

    rec = recommend_shape(
        params=config["params"], gpu=gpu, seq_len=config["seq_len"],
        vocab_size=config["vocab_size"], arch=config["arch"], tp=config["tp"],
        micro_batch=config["micro_batch"], n_trials=search_trials, seed=config["seed"],
        dtype=config["dtype"], top_k=config["top_k"], image_size=config["image_size"],
        patch_size=config["patch_size"])
    out = []
    for i, c in enumerate(rec.candidates):
        est = c.estimate
        if est.recompute:  # the measured step never recomputes
            est = estimate(c.shape, gpu=gpu, micro_batch=est.micro_batch, seq_len=est.seq_len,
                           tp=est.tp, dtype=est.dtype)
        layer_s, head_s = predicted_parts(est)
        step_s = c.shape.num_hidden_layers * layer_s + head_s
        tps = _tokens_per_s(step_s, est.micro_batch, est.seq_len, est.tp)
        n = count_params(c.shape)
        out.append({
            "index": i, "shape": c.shape.to_dict(), "params": n, "seq_len": est.seq_len,
            "predicted": {"layer_s": layer_s, "head_s": head_s, "step_s": step_s,
                          "tokens_per_s": tps, "score": tps * n / config["params"],
                          "model_tokens_per_s": est.tokens_per_s,
                          "calibration": est.calibration},
            "reason": c.reason,
        })
    return out


# ---------------------------------------------------------------------------- measuring
def _measure(shape: ModelShape, *, micro_batch: int, seq_len: int, tp: int, device: str,
             dtype: str, repeats: int) -> Iterator[Any]:
    """Timings of one block and the head, one ``StepTiming`` per repeat (tests replace this
    to run the study machinery without torch)."""
    from shapewise.kernels.block import step_timings
    from shapewise.kernels.timing import TimingConfig, is_gpu

    if is_gpu(device):
        cfg = TimingConfig(warmup_ms=25, rep_ms=100, min_runs=10, max_runs=100)
    else:
        cfg = TimingConfig(cpu_min_run_time_s=0.05, cpu_max_run_time_s=0.3,
                           cpu_threshold=0.1)
    return step_timings(shape, micro_batch=micro_batch, seq_len=seq_len, tp=tp,
                        device=device, dtype=dtype, repeats=repeats, config=cfg)


def _release(device: str) -> None:
    with contextlib.suppress(Exception):
        from shapewise.kernels.timing import release_memory

        release_memory(device)


def _device_name(device: str) -> str:
    if device == "cpu":
        from shapewise.bench.provenance import cpu_info

        return str(cpu_info().get("model") or "CPU")
    from shapewise.kernels.timing import device_info

    return str(device_info(device).get("name") or device)


@dataclass(frozen=True, slots=True)
class _Worker:
    """One process's part: its device, and how it measures."""

    device: str
    device_name: str
    dtype: str
    repeats: int
    heartbeat_s: float
    say: Callable[[str], None]


def _run_trial(ctx: _Context, w: _Worker, tid: int, cands: list[dict[str, Any]],
               config: Mapping[str, Any]) -> None:
    study = ctx.study
    trial = optuna.trial.Trial(study, tid)
    number = trial.number
    idx = trial.suggest_categorical("candidate", list(range(len(cands))))
    cand = cands[int(idx)]  # type: ignore[arg-type]
    shape = ModelShape.from_dict(cand["shape"])
    here = _host_id()
    owner = {"trial": number, **here, "pid": os.getpid(), "pid_start": _proc_start(os.getpid()),
             "device": w.device, "device_name": w.device_name}
    ctx.storage.set_trial_system_attr(tid, _OWNER, owner)
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
        tps = _tokens_per_s(step_s, b, s, tp)
        return {"block_s": block_s, "head_s": head_s, "step_s": step_s,
                "block_spread_s": statistics.median(spreads), "repeats": len(blocks),
                "tokens_per_s": tps, "score": tps * n / budget, "device": w.device,
                "device_name": w.device_name, "dtype": w.dtype, "host": here["host"],
                "method": method, "pruned": pruned}

    w.say(f"trial {number}: measuring candidate {idx} (h {shape.hidden_size}, L {L}) on "
          f"{w.device}, {w.repeats} repeat(s)")
    with _Heartbeat(ctx.beat(tid, number), w.heartbeat_s):
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
                tps = _tokens_per_s(L * t.block_s + t.head_s, b, s, tp)
                trial.report(tps * n / budget, step)
                if trial.should_prune():
                    pruned = True
                    break
            if hasattr(timings, "close"):
                timings.close()  # frees the layers of an abandoned measurement
        except KeyboardInterrupt:
            _finish(study, trial, state=TrialState.FAIL)
            _retry_callback()(study, ctx.storage.get_trial(tid))
            raise
        except Exception as exc:
            _release(w.device)
            oom = "out of memory" in str(exc).lower()
            why = ("out of memory" if oom else f"{type(exc).__name__}: {_first_line(exc)}")
            with contextlib.suppress(Exception):
                ctx.storage.set_trial_user_attr(tid, "error", why)
            _finish(study, trial, state=TrialState.FAIL)
            w.say(f"trial {number}: candidate {idx} failed: {why}")
            if oom:  # the shape does not fit this device: retrying cannot help
                return
            _retry_callback()(study, ctx.storage.get_trial(tid))
            raise
        _release(w.device)
        result = summary()
        ctx.storage.set_trial_user_attr(tid, _MEASURED, result)
        if pruned:
            _finish(study, trial, state=TrialState.PRUNED)
        else:
            _finish(study, trial, value=result["score"])
    w.say(f"trial {number}: candidate {idx} (h {shape.hidden_size}, L {L}): "
          f"{result['tokens_per_s']:,.0f} tok/s, block {result['block_s'] * 1e3:.3g} ms"
          + (" [pruned: hopeless]" if pruned else ""))


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


# ------------------------------------------------------------------------------ report
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
        done = [t for t in ts if t.state == TrialState.COMPLETE and _MEASURED in t.user_attrs]
        part = [t for t in ts if t.state == TrialState.PRUNED and _MEASURED in t.user_attrs]
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
            reason = next((str(t.user_attrs.get("error") or t.system_attrs.get(_WHY_FAILED))
                           for t in reversed(ts) if t.state == TrialState.FAIL), "")
        m = [t.user_attrs[_MEASURED] for t in use]
        devs = tuple(sorted({str(x.get("device_name")) for x in m}))
        devices.update(devs)
        p = c["predicted"]
        meas: dict[str, float | None] = dict.fromkeys(
            ("layer", "head", "step", "tps", "score", "error"))
        if m:
            layer = statistics.median(x["block_s"] for x in m)
            head = statistics.median(x["head_s"] for x in m)
            step = shape.num_hidden_layers * layer + head
            tps = _tokens_per_s(step, b, c["seq_len"], tp)
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
    import dataclasses

    return dataclasses.replace(r, measured_rank=rank)


# --------------------------------------------------------------------------------- tune
def _pos_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


def tune(
    *, study: str, params: float | None = None, gpu: str | GPU | None = None,
    profile: str | None = None,
    device: str | None = None, arch: str | None = None, seq_len: int | None = None,
    micro_batch: int | None = None, tp: int | None = None, dtype: str | None = None,
    vocab_size: int | None = None, image_size: int | None = None,
    patch_size: int | None = None, storage: str | None = None, n_trials: int | None = None,
    top_k: int | None = None, search_trials: int | None = None, seed: int | None = None,
    repeats: int | None = None, prune_margin: float = PRUNE_MARGIN,
    heartbeat_s: float = HEARTBEAT_S, wait: bool = True, record: str | None = None,
    progress: bool = False,
) -> TuneReport:
    """Join (or create) study ``study`` in ``storage``, measure its trials on ``device`` until
    none is left, and report the measured ranking beside the predicted one.

    The first worker needs ``params`` and ``gpu`` (or ``profile``) to run the analytic
    search; the others may leave every option out and take the study's. Options given
    must match the study's (an InputError says which differ). ``n_trials`` defaults to
    ``top_k`` (one trial per finalist); more give each finalist several trials (the median
    counts). ``device``: 'cuda:N' (ROCm too), or 'cpu' (fp32, small shapes: for tests);
    default the first GPU, else the CPU. ``record``: a JSON file of the per-finalist
    predictions and measurements with their provenance (calibration data; docs/tuning.md).

    >>> import tempfile, os
    >>> tmp = tempfile.mkdtemp()
    >>> rep = tune(study="doc", params=20e6, gpu="h100", arch="llama", seq_len=32,
    ...            vocab_size=4096, top_k=2, device="cpu", repeats=1,
    ...            storage=os.path.join(tmp, "t.log"))  # doctest: +SKIP
    >>> [c.state for c in rep.candidates]  # doctest: +SKIP
    ['complete', 'complete']
    """
    from shapewise.hardware.catalog import canonical_dtype, get_gpu, load_profile

    t0 = time.monotonic()
    if not isinstance(study, str) or not study.strip():
        raise InputError(f"--study: expected a study name, got {study!r}")
    if params is not None and (isinstance(params, bool) or not isinstance(
            params, numbers.Real) or not math.isfinite(params) or params <= 0):
        raise InputError(f"params: must be a positive number of parameters, got {params!r}")
    if arch is not None and arch not in ("gpt", "llama", "vit"):
        raise InputError(f"arch: must be 'gpt', 'llama' or 'vit', got {arch!r}")
    ints = {k: _pos_int(k, v) for k, v in (
        ("seq_len", seq_len), ("micro_batch", micro_batch), ("tp", tp),
        ("vocab_size", vocab_size), ("image_size", image_size), ("patch_size", patch_size),
        ("n_trials", n_trials), ("top_k", top_k), ("search_trials", search_trials),
        ("repeats", repeats))}
    if seed is not None and (isinstance(seed, bool) or not isinstance(
            seed, numbers.Integral) or not 0 <= seed < 2**32):
        raise InputError(f"seed: must be an integer in [0, 2**32 - 1], got {seed!r}")
    if isinstance(heartbeat_s, bool) or not isinstance(heartbeat_s, numbers.Real) or not (
            heartbeat_s > 0):
        raise InputError(f"heartbeat_s: must be a positive number of seconds, got "
                         f"{heartbeat_s!r}")
    pruner = HopelessPruner(prune_margin)
    g = None
    if profile is not None:
        g = load_profile(profile)
    elif gpu is not None:
        g = get_gpu(gpu, field_name="gpu")
    dt = canonical_dtype(dtype) if dtype is not None else None
    asked = {"params": float(params) if params is not None else None, "arch": arch,
             "gpu": g.id if g is not None else None, "dtype": dt,
             **{k: ints[k] for k in ("seq_len", "micro_batch", "tp", "vocab_size",
                                     "image_size", "patch_size", "top_k", "n_trials")},
             "seed": seed}

    def say(msg: str) -> None:
        if progress:
            print(f"shapewise tune: {msg}", file=sys.stderr, flush=True)

    def can_create() -> None:
        if params is None:
            raise InputError(f"--params: study {study!r} does not exist yet; its first worker "
                             "needs the parameter budget (and --gpu) to create it")
        if g is None:
            raise InputError(f"--gpu: study {study!r} does not exist yet; its first worker "
                             "needs the GPU the analytic search predicts for (or --profile)")

    def make() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        can_create()
        assert params is not None and g is not None
        k = ints["top_k"] or DEFAULT_TOP_K
        full = {"format": FORMAT, "params": float(params), "arch": arch or "gpt",
                "gpu": g.id, "dtype": dt or "bf16", "seq_len": ints["seq_len"] or 2048,
                "micro_batch": ints["micro_batch"] or 1, "tp": ints["tp"] or 1,
                "vocab_size": ints["vocab_size"] or 50257,
                "image_size": ints["image_size"] or 224, "patch_size": ints["patch_size"] or 16,
                "top_k": k, "n_trials": ints["n_trials"] or k, "seed": int(seed or 0),
                "search_trials": ints["search_trials"]}
        say(f"study {study!r}: analytic search for {full['params']:.3g} params on {g.name}")
        # fewer trials than finalists: the ones predicted best are measured
        cands = _finalists(full, g, ints["search_trials"])[:full["n_trials"]]
        full["candidates"] = len(cands)
        say(f"study {study!r}: {len(cands)} finalists")
        return full, cands

    import importlib.util

    if importlib.util.find_spec("torch") is None:  # (importing it would cost seconds here)
        raise InputError("tune measures its finalists with torch: pip install "
                         "'shapewise[bench]'")
    path = journal_path(DEFAULT_STORAGE if storage is None else storage) if isinstance(
        storage, str | None) else None
    if path is not None and not Path(path).expanduser().exists():
        can_create()  # a new journal holds no study: fail before creating the file
    from shapewise.kernels.timing import gpu_available, is_gpu, parse_device

    dev = parse_device(device) if device is not None else (
        "cuda:0" if gpu_available() else "cpu")
    if is_gpu(dev):
        from shapewise.kernels.timing import gpu_count

        count = gpu_count() if gpu_available() else 0
        if int(dev.split(":")[1]) >= count:
            raise InputError(f"device: {dev} asked, but torch sees {count} GPU(s) here")
    if record is not None and not Path(record).expanduser().resolve().parent.is_dir():
        raise InputError(f"record: folder of {record!r} does not exist")
    store = open_storage(storage, heartbeat_s=float(heartbeat_s))
    is_rdb = isinstance(store, optuna.storages.RDBStorage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st, created = _open_or_create(store, study, asked, make, pruner, say)
    config = dict(st.user_attrs[_CONFIG])
    cands = list(st.user_attrs[_CANDIDATES])
    ctx = _Context(st, store, store.get_study_id_from_name(study), float(heartbeat_s), is_rdb)
    w_dtype = config["dtype"] if is_gpu(dev) else "fp32"
    if w_dtype == "tf32":
        w_dtype = "fp32"
    n_rep = ints["repeats"] or DEFAULT_REPEATS["gpu" if is_gpu(dev) else "cpu"]
    worker = _Worker(dev, _device_name(dev), w_dtype, n_rep, float(heartbeat_s), say)
    if not created:
        say(f"joined study {study!r} ({len(cands)} finalists, {config['n_trials']} trials)")

    mine: list[int] = []
    waiting_said = False
    while True:
        for number in ctx.reap():
            say(f"trial {number} failed with its worker; a retry is enqueued")
        tid = ctx.claim()
        if tid is not None:
            number = store.get_trial(tid).number
            mine.append(number)
            _run_trial(ctx, worker, tid, cands, config)
            continue
        running = st.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        if not running or not wait:
            break
        if not waiting_said:
            say(f"waiting for {len(running)} trial(s) of other workers")
            waiting_said = True
        time.sleep(min(POLL_S, heartbeat_s))

    rows, states, devices = _collect(st, cands, config)
    measured = [r for r in rows if r.measured_score is not None]
    rho = _spearman([r.predicted_score for r in measured],
                    [r.measured_score for r in measured])  # type: ignore[misc]
    warns, notes = _advice(rho, rows, states, devices, config, worker)
    report = TuneReport(
        study=study, storage=_redact(storage or DEFAULT_STORAGE), config=config,
        candidates=tuple(rows), rho=rho, trial_states=states, this_worker=tuple(mine),
        device=dev, device_name=worker.device_name, measure_dtype=w_dtype,
        elapsed_s=time.monotonic() - t0, warnings=tuple(warns), notes=tuple(notes))
    if record is not None:
        write_record(report, record)
    return report


def _advice(rho: float | None, rows: list[TunedCandidate], states: Mapping[str, int],
            devices: set[str], config: Mapping[str, Any], w: _Worker
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
    from shapewise.bench.provenance import collect
    from shapewise.bench.store import atomic_write_json
    from shapewise.kernels.timing import device_info

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
