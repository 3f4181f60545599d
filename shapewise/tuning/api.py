"""``tune()``: one worker's whole run, read top to bottom like an Optuna example.

Open the storage, load the study (or create it: stage one, the analytic search, runs
there), claim and measure trials until none is left, report.
"""

from __future__ import annotations

import importlib.util
import numbers
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from shapewise.errors import InputError
from shapewise.kernels.timing import resolve_device
from shapewise.tuning.liveness import StudyContext, claims
from shapewise.tuning.report import TuneReport, make_report, write_record
from shapewise.tuning.storage import DEFAULT_STORAGE, HEARTBEAT_S, journal_path, open_storage
from shapewise.tuning.study import (
    CANDIDATES,
    CONFIG,
    TARGET_KEYWORDS,
    StudyRequest,
    open_or_create,
    positive_int,
)
from shapewise.tuning.trial import PRUNE_MARGIN, HopelessPruner, Worker, run_trial

if TYPE_CHECKING:  # pragma: no cover
    from shapewise.plan import Target


def tune(
    *, study: str, target: Target | None = None, params: float | None = None,
    arch: str | None = None, vocab_size: int | None = None, image_size: int | None = None,
    patch_size: int | None = None, top_k: int | None = None, n_trials: int | None = None,
    search_trials: int | None = None, seed: int | None = None, device: str | None = None,
    storage: str | None = None, repeats: int | None = None,
    prune_margin: float = PRUNE_MARGIN, heartbeat_s: float = HEARTBEAT_S, wait: bool = True,
    record: str | None = None, progress: bool = False, **fields: Any,
) -> TuneReport:
    """Join (or create) study ``study`` in ``storage``, measure its trials on ``device`` until
    none is left, and report the measured ranking beside the predicted one.

    ``target``: a :class:`shapewise.Target` (:func:`shapewise.make_target`): the GPU the
    analytic search predicts for, its dtype, sequence length, micro-batch and tp. Instead
    of it, its fields may be given one by one as earlier versions took them (``gpu=`` or
    ``profile=``, ``dtype=``, ``seq_len=``, ``micro_batch=``, ``tp=``), each optional for a
    worker that joins. The first worker needs ``params`` and the GPU to run the analytic
    search; the others may leave every option out and take the study's. Options given
    must match the study's (an InputError says which differ; a target given whole must
    match in all its fields). ``n_trials`` defaults to
    ``top_k`` (one trial per finalist); more give each finalist several trials (the median
    counts). ``device``: 'cuda:N' (ROCm too), or 'cpu' (fp32, small shapes: for tests);
    default the first GPU, else the CPU. ``record``: a JSON file of the per-finalist
    predictions and measurements with their provenance (calibration data; docs/tuning.md).

    The study options (``target`` to ``seed``) are validated once, into a
    :class:`~shapewise.tuning.study.StudyRequest`; below this function nothing re-validates.

    >>> import tempfile, os
    >>> from shapewise import make_target
    >>> tmp = tempfile.mkdtemp()
    >>> rep = tune(study="doc", params=20e6, target=make_target(gpu="h100", seq_len=32),
    ...            arch="llama", vocab_size=4096, top_k=2, device="cpu", repeats=1,
    ...            storage=os.path.join(tmp, "t.log"))  # doctest: +SKIP
    >>> [c.state for c in rep.candidates]  # doctest: +SKIP
    ['complete', 'complete']
    """
    t0 = time.monotonic()
    if not isinstance(study, str) or not study.strip():
        raise InputError(f"--study: expected a study name, got {study!r}")
    for name in fields:
        if name not in TARGET_KEYWORDS:
            raise TypeError(f"tune() got an unexpected keyword argument {name!r}")
    request = StudyRequest.parse(
        params=params, target=target, arch=arch, seed=seed, vocab_size=vocab_size,
        image_size=image_size, patch_size=patch_size, top_k=top_k, n_trials=n_trials,
        search_trials=search_trials, **fields)
    n_repeats = positive_int("repeats", repeats)
    beat_s = _seconds("heartbeat_s", heartbeat_s)
    pruner = HopelessPruner(prune_margin)
    say = _say if progress else _quiet
    _before_storage(study, storage, request)
    dev = resolve_device(device)
    if record is not None and not Path(record).expanduser().resolve().parent.is_dir():
        raise InputError(f"record: folder of {record!r} does not exist")

    store = open_storage(storage, heartbeat_s=beat_s)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st, created = open_or_create(store, study, request, pruner, say)
    config, cands = dict(st.user_attrs[CONFIG]), list(st.user_attrs[CANDIDATES])
    if not created:
        say(f"joined study {study!r} ({len(cands)} finalists, {config['n_trials']} trials)")
    ctx = StudyContext(st, store, store.get_study_id_from_name(study), beat_s,
                       isinstance(store, optuna.storages.RDBStorage))
    worker = Worker.on(dev, study_dtype=config["dtype"], repeats=n_repeats,
                       heartbeat_s=beat_s, say=say)
    mine = [run_trial(ctx, worker, tid, cands, config)
            for tid in claims(ctx, wait=wait, say=say)]

    report = make_report(st, cands, config, worker, storage=storage or DEFAULT_STORAGE,
                         mine=mine, elapsed_s=time.monotonic() - t0)
    if record is not None:
        write_record(report, record)
    return report


def _before_storage(study: str, storage: str | None, request: StudyRequest) -> None:
    """What must fail before the storage is touched (a failed start leaves no file)."""
    if importlib.util.find_spec("torch") is None:  # (importing it would cost seconds here)
        raise InputError("tune measures its finalists with torch: pip install "
                         "'shapewise[bench]'")
    path = journal_path(DEFAULT_STORAGE if storage is None else storage) if isinstance(
        storage, str | None) else None
    if path is not None and not Path(path).expanduser().exists():
        request.require_creatable(study)  # a new journal holds no study to join


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise InputError(f"{name}: must be a positive number of seconds, got {value!r}")
    return float(value)


def _say(message: str) -> None:
    print(f"shapewise tune: {message}", file=sys.stderr, flush=True)


def _quiet(message: str) -> None:
    del message
