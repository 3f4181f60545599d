"""The package as users get it: no torch needed, data files shipped, cheap import."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources

import pytest

import shapewise

BLOCK_TORCH = (
    "import sys\n"
    "for name in ('torch', 'triton'):\n"
    "    sys.modules[name] = None  # any 'import torch' now raises ImportError\n"
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd="/")


def test_core_api_works_without_torch_or_triton() -> None:
    code = BLOCK_TORCH + (
        "import shapewise as sw\n"
        "sw.gemm_time(4096, 4096, 4096, gpu='h100')\n"
        "s = sw.from_hf_config({'model_type': 'gpt2', 'n_embd': 768, 'n_head': 12,"
        " 'n_layer': 12, 'vocab_size': 50257, 'n_positions': 1024})\n"
        "sw.estimate(s, gpu='a100', seq_len=1024)\n"
        "sw.check_shape(s, gpu='a100', seq_len=1024)\n"
        "sw.recommend_shape(params=125e6, gpu='a100', n_trials=10)\n"
        "print('ok')\n"
    )
    r = _python(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_import_is_light() -> None:
    r = _python("import sys, time; t = time.perf_counter(); import shapewise; "
                "dt = time.perf_counter() - t; "
                "heavy = [m for m in ('torch', 'triton', 'optuna', 'scipy') if m in sys.modules]; "
                "print(heavy, dt)")
    heavy, _ = r.stdout.rsplit(" ", 1)
    assert heavy == "[]", r.stdout


def test_profiles_and_kernels_ship_in_the_package() -> None:
    profiles = [p.name for p in resources.files("shapewise.profiles").iterdir()
                if p.name.endswith(".json")]
    assert len(profiles) >= 22
    systems = [p.name for p in resources.files("shapewise.profiles").joinpath("systems").iterdir()
               if p.name.endswith(".json")]
    assert len(systems) >= 7
    assert resources.files("shapewise.kernels").joinpath("__init__.py").is_file()


def test_ci_tests_the_installed_package_not_the_source_tree() -> None:
    if not os.environ.get("CI"):
        pytest.skip("only under CI (developers usually run an editable install)")
    assert "site-packages" in shapewise.__file__, shapewise.__file__
