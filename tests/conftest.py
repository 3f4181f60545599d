"""Every test starts in its own empty working folder.

Subprocesses that run ``python -m shapewise`` or ``python -c`` then import shapewise as
installed (CI installs the wheel), never a source tree that happens to be the working
directory; tests that need repository files name them by absolute path.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _neutral_cwd(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(folder)
    return folder
