"""Where a study lives: the Optuna storage a ``--storage`` value names.

``journal:///path/file.log`` or a plain path ending in ``.log`` (the default,
``shapewise-tune.log`` in the working folder): a :class:`JournalStorage` file, for the
workers of one node. ``sqlite:///file.db``: one node as well. ``postgresql://...``: a
cluster (needs ``psycopg2`` or ``psycopg``). docs/tuning.md shows how to run them.

An RDB storage (SQLite, PostgreSQL) gets Optuna's heartbeat, and a retry of each trial that
the heartbeat fails (:mod:`shapewise.tuning.liveness` says how dead workers are found).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from shapewise.errors import InputError

#: where the study lives when no storage is given: a journal file in the working folder
DEFAULT_STORAGE = "shapewise-tune.log"
#: seconds between heartbeats of a running trial; stale after GRACE_BEATS of them
HEARTBEAT_S = 10.0
GRACE_BEATS = 3
#: a trial lost with its worker is retried at most this often (a shape that kills its
#: worker every time must not stop the study)
MAX_RETRY = 3


def grace_s(heartbeat_s: float, *, rdb: bool) -> float:
    """Seconds of silence after which a running trial's worker counts as dead: GRACE_BEATS
    heartbeats (an RDB storage's heartbeat is in whole seconds, its grace at least two)."""
    if rdb:
        beat = max(1, math.ceil(heartbeat_s))
        return max(2 * beat, math.ceil(GRACE_BEATS * heartbeat_s))
    return GRACE_BEATS * heartbeat_s


def redact(url: str) -> str:
    """The URL with its password replaced by '***'."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL: hide everything between '://' and '@'
        head, rest = url.split("://", 1)
        return f"{head}://***@{rest.rsplit('@', 1)[1]}"


def retry_callback() -> Callable[[optuna.Study, FrozenTrial], None]:
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
    """The Optuna storage a ``--storage`` value names (see the module doc).

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
        raise InputError(f"--storage: unknown scheme {scheme!r} in {redact(url)!r}; use a "
                         "journal file (*.log), sqlite:///FILE or postgresql://...")
    if scheme == "postgres":  # SQLAlchemy knows only the long name
        url = "postgresql" + url[len("postgres"):]
    if url.startswith("postgresql://"):
        url = "postgresql+" + _postgres_driver() + url[len("postgresql"):]
    return _rdb_storage(url, scheme, heartbeat_s)


def _postgres_driver() -> str:
    """The installed PostgreSQL driver: SQLAlchemy 2.0 defaults to psycopg2, 2.1 to psycopg
    (3); naming the one that is installed works with either."""
    for module, name in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise InputError("--storage: postgresql needs a database driver: pip install "
                     "psycopg2-binary (or psycopg)")


def _rdb_storage(url: str, scheme: str, heartbeat_s: float) -> optuna.storages.RDBStorage:
    engine: dict[str, Any] = {}
    if scheme == "sqlite":
        # the driver's own transactions off: each one begins with BEGIN IMMEDIATE below,
        # so a read-then-write (the WAITING -> RUNNING claim) cannot interleave with
        # another process's; writers queue for up to 60 s instead of failing at once
        engine = {"connect_args": {"timeout": 60, "isolation_level": None}}
    else:
        engine = {"pool_pre_ping": True}  # a long-idle worker's connection may be dropped
    kwargs: dict[str, Any] = {"heartbeat_interval": max(1, math.ceil(heartbeat_s)),
                              "grace_period": grace_s(heartbeat_s, rdb=True)}
    sig = inspect.signature(optuna.storages.RDBStorage)
    cb_name = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
               in sig.parameters else "failed_trial_callback")
    kwargs[cb_name] = retry_callback()
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
        raise InputError(f"--storage: cannot open {redact(url)}: {first_line(last)}")
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


def first_line(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

