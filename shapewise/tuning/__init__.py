"""``shapewise.tune``: measure the analytic search's finalists on real hardware, with any
number of workers sharing one Optuna study through Optuna's storage.

Stage one, the analytic search (:func:`shapewise.recommend_shape`), narrows thousands of
shapes to the ``top_k`` it predicts fastest. Stage two measures each of them on the device
and reports the measured ranking beside the predicted one. docs/tuning.md is the guide.

The package, split along its seams:

===============  ==========================================================================
module           what it holds
===============  ==========================================================================
``api``          :func:`tune`: one worker's run, top to bottom
``study``        what a trial compares (:func:`predicted_parts`), the study's options
                 (``StudyRequest``), creating or joining a study (stage one runs there)
``storage``      the Optuna storage a ``--storage`` value names (journal, SQLite, PostgreSQL)
``liveness``     claiming trials, heartbeats, failing and retrying the trials of dead workers
``trial``        measuring one candidate, with the hopeless-candidate pruner
``report``       :class:`TuneReport`, the rank correlation, the record of predicted and
                 measured times
===============  ==========================================================================

Why ``tuning`` and not ``tune``: the public function is ``shapewise.tune``, resolved lazily
by ``shapewise.__getattr__``. Importing a subpackage sets it as an attribute of its parent,
so a subpackage named ``shapewise.tune`` would replace the function by a module the moment
anything imported it (``shapewise.tune(...)`` would then raise "module is not callable").
Keeping the name ``shapewise.tuning`` also keeps every existing import working.
"""

from __future__ import annotations

from shapewise.tuning.api import tune
from shapewise.tuning.report import POOR_RHO, TunedCandidate, TuneReport, write_record
from shapewise.tuning.storage import (
    DEFAULT_STORAGE,
    GRACE_BEATS,
    HEARTBEAT_S,
    MAX_RETRY,
    check_journal_file,
    journal_path,
    open_storage,
)
from shapewise.tuning.study import DEFAULT_TOP_K, FORMAT, StudyRequest, predicted_parts
from shapewise.tuning.trial import DEFAULT_REPEATS, PRUNE_AFTER, PRUNE_MARGIN, HopelessPruner

__all__ = [
    "DEFAULT_REPEATS", "DEFAULT_STORAGE", "DEFAULT_TOP_K", "FORMAT", "GRACE_BEATS",
    "HEARTBEAT_S", "MAX_RETRY", "POOR_RHO", "PRUNE_AFTER", "PRUNE_MARGIN", "HopelessPruner",
    "StudyRequest", "TuneReport", "TunedCandidate", "check_journal_file", "journal_path",
    "open_storage", "predicted_parts", "tune", "write_record",
]
