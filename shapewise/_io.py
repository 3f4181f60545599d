"""User files, read safely (bounded reads, UTF-8 text, strict JSON: data, never code) and
written atomically (a reader, or a process killed mid-write, never leaves half a file)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from shapewise.errors import InputError


def read_text(path: str | Path, *, limit: int, what: str) -> str:
    """The file's UTF-8 text; InputError naming the file when unreadable or over ``limit``.

    At most ``limit`` + 1 bytes are read: st_size is 0 for pipes and devices (/dev/zero
    would otherwise be read forever), and a FIFO (``<(cat x.json)``) still works.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(limit + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise InputError(f"{p}: cannot read {what} "
                         f"({getattr(exc, 'strerror', None) or exc})") from None
    if len(data) > limit:
        raise InputError(f"{p}: more than {limit} bytes is too large for {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason})") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    # json would turn 1e999 into inf, which no later check sees inside free-form data
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of duplicate keys; two "sm_count"s in one object is a mistake
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:80]!r}")
        out[key] = value
    return out


def parse_json(text: str, *, where: str) -> Any:
    """Strict JSON: no NaN/Infinity, no out-of-range numbers, no duplicate keys, no lone
    surrogates, bounded nesting. InputError naming ``where`` otherwise."""
    try:
        raw = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                         object_pairs_hook=_unique_keys)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, 1e999, over-long integers
        raise InputError(f"{where}: invalid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{where}: invalid JSON (nested too deeply)") from None
    try:
        # "\ud800" escapes decode to lone surrogates, which cannot be printed or written back
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}: invalid JSON (a string holds a lone surrogate escape)"
                         ) from None
    except RecursionError:
        raise InputError(f"{where}: invalid JSON (nested too deeply)") from None
    return raw


def read_json(path: str | Path, *, limit: int, what: str) -> Any:
    """:func:`read_text` then :func:`parse_json`."""
    return parse_json(read_text(path, limit=limit, what=what), where=str(path))


# ------------------------------------------------------------------------------ writing
def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` so that ``path`` is always either the old or the
    new document, never a partial one."""
    atomic_write_text(Path(path), json.dumps(obj, indent=1, allow_nan=False))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsync and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a results file is an ordinary file
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
