"""Every test starts in its own empty working folder.

Subprocesses that run ``python -m shapewise`` or ``python -c`` then import shapewise as
installed (CI installs the wheel), never a source tree that happens to be the working
directory; tests that need repository files name them by absolute path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `python -m pytest` puts the working folder, the repository root, first on sys.path. Its
# top-level kernels/ (installed as shapewise.kernels) would then shadow the Hugging Face
# `kernels` package that transformers imports when it is installed. What is tested is the
# installed package, so the root leaves the path ('' stays: it follows the chdir below).
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _ROOT]


@pytest.fixture(autouse=True)
def _neutral_cwd(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(folder)
    return folder
