"""Every example in the user guide and the README runs."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from shapewise.cli.main import main

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "user-guide.md"


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def test_user_guide_python_blocks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the guide reads fixtures by relative path
    namespace: dict = {}
    out = io.StringIO()
    code = blocks(GUIDE, "python")
    assert len(code) >= 8
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(code):
            exec(compile(block, f"{GUIDE.name}[python block {i}]", "exec"), namespace)
    text = out.getvalue()
    assert "6,738,415,616 parameters" in text
    assert "tokens/s/GPU" in text and "images/s" in text


@pytest.mark.parametrize("line", [
    line.strip() for block in blocks(GUIDE, "bash") for line in block.splitlines()
    if line.strip().startswith("shapewise ")
])
def test_user_guide_cli_lines_run(line: str, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)
    rc = main(shlex.split(line)[1:])
    assert rc in (0, 1), capsys.readouterr().err  # check may report findings (exit 1)
    assert capsys.readouterr().out.strip()


def test_readme_quickstart_runs_as_written() -> None:
    """The README's python block, taken from the README text, run by a fresh interpreter
    from the repository root as a new user would: no file is provided for it."""
    readme = REPO / "README.md"
    code = blocks(readme, "python")[0]
    assert "examples/my-llama-1b/config.json" in code  # the shipped example, no placeholder
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "tokens/s/GPU" in r.stdout
    # the example config's two findings, as check_shape's summaries
    assert "vocab_size 50257 → 50304" in r.stdout
    assert "intermediate_size 5461 →" in r.stdout


@pytest.mark.parametrize("line", [
    line.split("#")[0].strip() for block in blocks(REPO / "README.md", "bash")
    for line in block.splitlines() if "examples/" in line and line.startswith("shapewise ")
])
def test_readme_command_lines_on_the_example_run(line: str) -> None:
    r = subprocess.run([sys.executable, "-m", "shapewise", *shlex.split(line)[1:]],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode in (0, 1), r.stderr  # check exits 1: the example has findings
    assert "seq_len 4096: the default" in r.stdout  # the shared rule, said in the output
