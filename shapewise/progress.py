"""The one progress bar of shapewise: stderr, no dependency, shown only where it helps.

On a terminal it redraws one line in place, once the work has run longer than ``delay``
seconds, so quick calls stay clean. Elsewhere (stderr piped to a log) it is silent, unless
``log_lines`` asks for one line per update: a long sweep (``shapewise bench --progress``)
whose log is read afterwards. ``enabled=False`` silences it everywhere.

tqdm would draw the same bar; it is not worth a dependency for the two loops that use
this one (the analytic search and the bench sweep).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: characters of the bar itself
WIDTH = 24
#: longest note shown in place on a terminal (a longer line would wrap and break the redraw)
MAX_NOTE = 80


class Progress:
    """``update(n)`` advances by ``n``; ``set(done)`` jumps to ``done``; ``close()`` ends the
    line. Usable as a context manager."""

    def __init__(self, total: int, label: str = "", *, delay: float = 1.0,
                 force: bool = False, log_lines: bool = False, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.total = max(1, total)
        self.label = label
        self.delay = delay
        self.stream = stream if stream is not None else sys.stderr
        tty = force or self.stream.isatty()
        self.in_place = enabled and tty
        """redraw one line (a terminal, or ``force``)"""
        self.log_lines = enabled and log_lines and not tty
        """one line per update (a log)"""
        self.start = time.monotonic()
        self.done = 0
        self._width = 0

    def update(self, n: int = 1, note: str = "") -> None:
        self.set(self.done + n, note)

    def set(self, done: int, note: str = "") -> None:
        self.done = done
        elapsed = time.monotonic() - self.start
        if self.log_lines:
            self.stream.write(self._line(elapsed, note) + "\n")
            self.stream.flush()
        elif self.in_place and elapsed >= self.delay:
            line = self._line(elapsed, note[:MAX_NOTE])
            self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
            self.stream.flush()
            self._width = len(line)

    def _line(self, elapsed: float, note: str) -> str:
        fill = int(WIDTH * min(1.0, self.done / self.total))
        bar = "#" * fill + "-" * (WIDTH - fill)
        return (f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s "
                f"{note}").strip()

    def close(self) -> None:
        if self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
