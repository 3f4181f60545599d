"""A minimal progress bar on stderr (no dependency), shown only where it helps.

It draws only when stderr is a terminal (or ``force=True``) and only once the work has run
longer than ``delay`` seconds, so quick calls and piped output stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, *, delay: float = 1.0, force: bool = False,
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.label = label
        self.delay = delay
        self.stream = stream or sys.stderr
        self.enabled = enabled and (force or self.stream.isatty())
        self.start = time.monotonic()
        self.done = 0
        self._drawn = False

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self.enabled or time.monotonic() - self.start < self.delay:
            return
        frac = min(1.0, self.done / self.total)
        width = 28
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.monotonic() - self.start
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} "
                          f"{elapsed:5.1f}s {note[:40]:<40}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
