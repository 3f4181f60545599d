"""shapewise: choose transformer shapes that run fast on the GPU you train on.

The public API is flat and imported lazily, so ``import shapewise`` stays cheap and never
imports torch or triton (those are needed only to benchmark or trace a live model).

>>> import shapewise as sw
>>> sw.get_gpu("h100").sm_count
132
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

# kernels/ and profiles/ sit at the top of the repository (design card); an install maps them
# into this package (pyproject's package-dir). Python started in a source checkout imports
# this folder instead of the install (the working folder comes first on sys.path), so let
# the subpackages be found beside it there too: shapewise.kernels -> ../kernels.
_checkout = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "kernels").is_dir() and (
        _checkout / "kernels" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # type: ignore[name-defined]

# public name -> module that defines it
_API: dict[str, str] = {
    # hardware
    "GPU": "shapewise.hardware.catalog",
    "get_gpu": "shapewise.hardware.catalog",
    "list_gpus": "shapewise.hardware.catalog",
    "load_profile": "shapewise.hardware.catalog",
    "detect_gpu": "shapewise.hardware.detect",
    "System": "shapewise.hardware.system",
    "get_system": "shapewise.hardware.system",
    "list_systems": "shapewise.hardware.system",
    # cost model
    "gemm_time": "shapewise.cost.gemm",
    "explain_gemm": "shapewise.cost.gemm",
    "GemmExplanation": "shapewise.cost.gemm",
    "attention_time": "shapewise.cost.attention",
    "explain_attention": "shapewise.cost.attention",
    "attention_flops": "shapewise.cost.attention",
    "memory_bound_time": "shapewise.cost.elementwise",
    "allreduce_time": "shapewise.cost.comm",
    "collective_time": "shapewise.cost.comm",
    # model shapes
    "ModelShape": "shapewise.model.shape",
    "from_hf_config": "shapewise.model.hf",
    "load_shape": "shapewise.model.load",
    "LoadedShape": "shapewise.model.loaded",
    "count_params": "shapewise.model.params",
    "flops_per_token": "shapewise.model.flops",
    "step_flops": "shapewise.model.flops",
    "memory_per_gpu": "shapewise.model.memory",
    # low-precision recipes
    "Recipe": "shapewise.recipe",
    "get_recipe": "shapewise.recipe",
    # whole-step estimate and search
    "estimate": "shapewise.step",
    "Estimate": "shapewise.step",
    "Plan": "shapewise.plan",
    "Setup": "shapewise.plan",
    "make_setup": "shapewise.plan",
    "Target": "shapewise.plan",
    "make_target": "shapewise.plan",
    "plan_training": "shapewise.planner",
    "recommend_shape": "shapewise.search.recommend",
    "Recommendation": "shapewise.search.recommend",
    "exhaustive_search": "shapewise.search.exhaustive",
    "recommend_moe_shape": "shapewise.search.moe",
    # checks and hooks
    "check_shape": "shapewise.check.api",
    "check_before_training": "shapewise.check.api",
    "Finding": "shapewise.check.rules",
    "ShapeCheckError": "shapewise.check.api",
    "RULES": "shapewise.check.rules",
    "ShapewiseWarning": "shapewise.errors",
    # measurement
    "run_bench": "shapewise.bench.runner",
    "fit_profile": "shapewise.bench.fit",
    "tune": "shapewise.tuning",
    "InputError": "shapewise.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'shapewise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

