"""Measuring a device: sweep plans, the resumable results file, provenance, the runner.

``shapewise bench`` (or :func:`run_bench`) times the kernels of ``shapewise.kernels`` over
a plan designed to pin down the cost model's parameters, and writes a JSON document
``{"format", "provenance", "run", "measurements"}`` that ``shapewise fit`` reads.

- ``plan.py``: the sweeps, pure Python (``make_plan``, ``Target``, the spec dataclasses)
- ``store.py``: the results file, rewritten atomically after every measurement
  (``BenchStore``, ``load_document``)
- ``provenance.py``: command, date, device, driver, versions, clocks, method version
- ``runner.py``: ``run_bench`` (the progress bar is ``shapewise.progress``)

For tests there is a plan of sixteen small kernels: ``mode="tiny"`` here, or the hidden
option ``shapewise bench --plan tiny``.

Nothing here imports torch until a bench actually runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "run_bench": "shapewise.bench.runner",
    "make_plan": "shapewise.bench.plan",
    "Target": "shapewise.bench.plan",
    "GemmSpec": "shapewise.bench.plan",
    "AttentionSpec": "shapewise.bench.plan",
    "ElementwiseSpec": "shapewise.bench.plan",
    "PLAN_VERSION": "shapewise.bench.plan",
    "BenchStore": "shapewise.bench.store",
    "load_document": "shapewise.bench.store",
    "FORMAT": "shapewise.bench.store",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'shapewise.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
