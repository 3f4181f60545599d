"""``shapewise.tune`` stays the public function however the ``shapewise.tuning`` package and
its modules are imported (a subpackage named ``tune`` would have replaced it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = ("shapewise.tuning", "shapewise.tuning.api", "shapewise.tuning.study",
           "shapewise.tuning.storage", "shapewise.tuning.liveness", "shapewise.tuning.trial",
           "shapewise.tuning.report")


@pytest.mark.parametrize("first", ["function", "package"])
def test_shapewise_tune_is_the_function_after_the_package_is_imported(first: str) -> None:
    code = (
        "import importlib, inspect, shapewise\n"
        + ("f = shapewise.tune\n" if first == "function" else "")
        + f"for m in {MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "import shapewise.tuning as t\n"
        "assert inspect.isfunction(shapewise.tune), type(shapewise.tune)\n"
        "assert shapewise.tune is t.tune and callable(t.tune)\n"
        "assert 'study' in inspect.signature(shapewise.tune).parameters\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_public_signature_is_unchanged() -> None:
    """The CLI and callers pass these keywords; none was dropped in the split (#14: the
    target's fields are now collected into ``target=`` by make_target, still accepted one
    by one)."""
    import inspect

    import shapewise
    from shapewise.tuning.study import TARGET_KEYWORDS

    params = inspect.signature(shapewise.tune).parameters
    accepted = [k for k in params if params[k].kind is not inspect.Parameter.VAR_KEYWORD]
    accepted += TARGET_KEYWORDS
    for name in [
        "study", "params", "gpu", "profile", "device", "arch", "seq_len", "micro_batch", "tp",
        "dtype", "vocab_size", "image_size", "patch_size", "storage", "n_trials", "top_k",
        "search_trials", "seed", "repeats", "prune_margin", "heartbeat_s", "wait", "record",
        "progress",
    ]:
        assert name in accepted, name
    assert "target" in params
