"""The results file of ``shapewise bench``: one JSON document, rewritten atomically.

After every measurement the whole document is written to a temporary file in the same
folder, flushed to disk (``fsync``) and renamed over the results file (``os.replace``,
atomic on POSIX and Windows). So whenever the process dies, even by SIGKILL in the middle of
a write, the file holds the last complete document: every finished measurement, none twice,
at most the one in flight lost. ``--resume`` reads it back and skips the keys it has.

A document (format ``shapewise-bench/1``)::

    {
      "format": "shapewise-bench/1",
      "provenance": {...},                    # how it was made (provenance.py)
      "run": {"device": "cuda:0", "device_kind": "gpu", "device_name": "...",
              "dtype": "bf16", "mode": "full", "planned": 1134, "done": 812,
              "complete": false, "stopped": "budget of 360 s spent",
              "sessions": [{"started": "...", "command": "...", "resumed": false}]},
      "measurements": [{"key": "gemm:m=4096,...", "kind": "gemm", "status": "ok", ...}]
    }

The document is small (half a megabyte for a full GPU sweep of ~1100 kernels) and written
with one measurement per line, each serialised once, so a save costs a few milliseconds
next to the ~0.2 s of the measurement it records. A lock file beside it (``.NAME.lock``,
``flock``) keeps two processes from writing one results file; the kernel drops the lock
when its holder dies, and a clean exit removes the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from shapewise._io import atomic_write_json as atomic_write_json  # re-exported
from shapewise._io import atomic_write_text
from shapewise.errors import InputError

FORMAT = "shapewise-bench/1"
#: the record fields every measurement has (the kind-specific ones come on top)
RECORD_FIELDS = ("key", "kind", "group", "backend", "dtype", "status", "reason", "median_s",
                 "spread_s", "n_runs", "flops", "bytes")
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


def load_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a bench results file; errors name the file and what is wrong."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise InputError(f"{p}: {size} bytes is too large for a bench results file")
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such bench results file") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a JSON text file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"{p}: invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{p}: not a shapewise bench results file (format {FORMAT!r} expected)")
    for field, kind in (("provenance", dict), ("run", dict), ("measurements", list)):
        if not isinstance(doc.get(field), kind):
            raise InputError(f"{p}: field '{field}' must be a {kind.__name__}")
    for i, rec in enumerate(doc["measurements"]):
        if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
            raise InputError(f"{p}: measurements[{i}] has no 'key'")
    return doc


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``path`` for the duration (POSIX flock; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = path.parent / f".{path.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{path}: another shapewise bench is writing this file") from None
        yield
        with contextlib.suppress(OSError):  # tidy up; a waiting process fails, not blocks
            os.unlink(lock_path)
    finally:
        os.close(fd)  # releases the lock


class BenchStore:
    """The results document of one bench run, saved after every change.

    Use as a context manager: it holds the lock while open.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "bench.json"
    >>> with BenchStore.create(out, provenance={"command": "doc"}, run={"planned": 1}) as s:
    ...     s.add({"key": "gemm:m=1,n=1,k=1,b=1,dtype=fp32", "status": "ok"})
    >>> sorted(BenchStore.open(out).done_keys)
    ['gemm:m=1,n=1,k=1,b=1,dtype=fp32']
    """

    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path = Path(path)
        self.doc = doc
        self._keys = {rec["key"] for rec in doc["measurements"]}
        # each record serialised once: a save then costs one record, not the whole list
        self._lines = [_record_line(rec) for rec in doc["measurements"]]
        self._lock: contextlib.AbstractContextManager[None] | None = None

    # ------------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, provenance: Mapping[str, Any],
               run: Mapping[str, Any]) -> BenchStore:
        """A new, empty results document (written at once, so the file exists from the start)."""
        doc = {"format": FORMAT, "provenance": dict(provenance), "run": dict(run),
               "measurements": []}
        return cls(Path(path), doc)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, lock: bool = False) -> BenchStore:
        """An existing results document, to resume. ``lock=True`` takes the writer's lock
        before reading, so that no other run can add records between the read and this
        store's first save (release it with :meth:`release` if the store is not used)."""
        if not lock:
            return cls(Path(path), load_document(path))
        held = _exclusive_lock(Path(path))
        held.__enter__()
        try:
            store = cls(Path(path), load_document(path))
        except BaseException:
            held.__exit__(None, None, None)
            raise
        store._lock = held
        return store

    def release(self) -> None:
        """Give the lock back (a no-op when not held)."""
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def __enter__(self) -> BenchStore:
        if self._lock is None:
            self._lock = _exclusive_lock(self.path)
            self._lock.__enter__()
        self.save()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---------------------------------------------------------------------- contents
    @property
    def done_keys(self) -> frozenset[str]:
        return frozenset(self._keys)

    @property
    def measurements(self) -> list[dict[str, Any]]:
        return self.doc["measurements"]

    @property
    def run(self) -> dict[str, Any]:
        return self.doc["run"]

    def add(self, record: Mapping[str, Any]) -> None:
        """Append one measurement and save. A key already present is an error (a plan
        never asks twice; a resumed run skips done keys)."""
        key = record["key"]
        if key in self._keys:
            raise ValueError(f"measurement {key!r} is already in {self.path}")
        line = _record_line(record)  # fails here, before anything changes, on NaN etc.
        self.doc["measurements"].append(dict(record))
        self._lines.append(line)
        self._keys.add(key)
        self.run["done"] = len(self._keys)
        self.save()

    def drop(self, which: Callable[[Mapping[str, Any]], bool]) -> int:
        """Remove the records ``which`` selects (a resume measures them again); how many.
        Saved with the next change."""
        keep = [i for i, rec in enumerate(self.doc["measurements"]) if not which(rec)]
        dropped = len(self.doc["measurements"]) - len(keep)
        if dropped:
            self.doc["measurements"] = [self.doc["measurements"][i] for i in keep]
            self._lines = [self._lines[i] for i in keep]
            self._keys = {rec["key"] for rec in self.doc["measurements"]}
            self.run["done"] = len(self._keys)
        return dropped

    def update_run(self, **fields: Any) -> None:
        self.run.update(fields)
        self.save()

    def save(self) -> None:
        """Rewrite the file: provenance indented, then one measurement per line."""
        extra = {k: v for k, v in self.doc.items()
                 if k not in ("format", "provenance", "run", "measurements")}
        head = {"format": FORMAT, "provenance": self.doc["provenance"], "run": self.doc["run"],
                **extra}
        text = json.dumps(head, indent=1, allow_nan=False)[:-2]  # drop the closing "\n}"
        body = ",\n".join(self._lines)
        atomic_write_text(self.path, f'{text},\n "measurements": [\n{body}\n ]\n}}\n')


def _record_line(record: Mapping[str, Any]) -> str:
    return json.dumps(dict(record), separators=(", ", ": "), allow_nan=False)
