"""The one progress bar: in place on a terminal, lines in a log only when asked, else quiet."""

from __future__ import annotations

import io

from shapewise.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_update_only_when_asked() -> None:
    log = io.StringIO()
    with Progress(3, "bench", log_lines=True, stream=log) as bar:
        bar.set(1, "gemm:a ok")
        bar.update(2, "gemm:b ok")
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("bench [") and "3/3" in lines[1]
    quiet = io.StringIO()
    with Progress(3, "recommend", stream=quiet) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_a_terminal_redraws_in_place_after_the_delay() -> None:
    tty = _Tty()
    with Progress(4, "recommend", delay=0.0, stream=tty) as bar:
        bar.update(1, "a long note " * 20)
        bar.update(1, "short")
    out = tty.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and "2/4" in out
    assert max(len(part) for part in out.split("\r")) < 200  # notes are cut to fit a line
    slow = _Tty()
    with Progress(4, "x", delay=60.0, stream=slow) as bar:
        bar.update(1)
    assert slow.getvalue() == ""  # quick work draws nothing


def test_disabled_is_silent_everywhere() -> None:
    for stream in (_Tty(), io.StringIO()):
        with Progress(2, "x", delay=0.0, log_lines=True, enabled=False, stream=stream) as bar:
            bar.update(2)
        assert stream.getvalue() == ""
