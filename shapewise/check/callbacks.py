"""Trainer callbacks that run the shape check when training starts.

* :class:`ShapewiseCallback`: a Hugging Face ``transformers.TrainerCallback``
  (``Trainer(..., callbacks=[ShapewiseCallback(gpu="h100")])``); runs at ``on_train_begin``
  on the main process, with the micro-batch from ``per_device_train_batch_size``;
* :class:`ShapewiseLightningCallback`: a PyTorch Lightning ``Callback``
  (``Trainer(callbacks=[ShapewiseLightningCallback()])``); runs at ``on_train_start`` on
  global rank 0, with the module's ``example_input_array`` when it has one and the micro-
  batch of the training DataLoader. It subclasses ``lightning.pytorch.Callback`` when the
  ``lightning`` package is installed, else ``pytorch_lightning.Callback``.

Both trace the live model on the meta device (see :mod:`shapewise.check.trace`): no weight
is copied, nothing runs on the GPU, and the check takes seconds. A model the tracer cannot
run is reported as a warning and training goes on (with ``on_finding="raise"``, it stops).
Findings are issued as :class:`shapewise.ShapewiseWarning` (``on_finding="warn"``), or
stop the run with :class:`shapewise.check.api.ShapeCheckError` (``on_finding="raise"``).
The classes are built on first use, so importing this module needs neither package; using
one without its package raises ImportError saying what to install.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from shapewise.check.api import OnFinding, check_before_training
from shapewise.check.rules import Finding, Severity
from shapewise.errors import InputError, ShapewiseWarning


class _Settings:
    """What both callbacks take; everything is passed on to check_before_training."""

    def __init__(self, *, gpu: Any = None, on_finding: OnFinding = "warn",
                 fail_on: Severity = "warning", micro_batch: int | None = None,
                 seq_len: int | None = None, dtype: str = "bf16", example_input: Any = None,
                 rules: Any = None) -> None:
        self.gpu = gpu
        self.on_finding: OnFinding = on_finding
        self.fail_on: Severity = fail_on
        self.micro_batch = micro_batch
        self.seq_len = seq_len
        self.dtype = dtype
        self.example_input = example_input
        self.rules = rules
        self.findings: list[Finding] | None = None
        """the findings of the last run (None before training starts)"""

    def _check(self, model: Any, *, micro_batch: int | None, example_input: Any = None
               ) -> list[Finding]:
        """Run the check; a model that cannot be traced is a warning, not a failed run
        (unless on_finding="raise")."""
        try:
            self.findings = check_before_training(
                model, gpu=self.gpu, on_finding=self.on_finding, fail_on=self.fail_on,
                micro_batch=self.micro_batch or micro_batch, seq_len=self.seq_len,
                dtype=self.dtype, rules=self.rules, stacklevel=4,
                example_input=(self.example_input if self.example_input is not None
                               else example_input),
            )
        except InputError as exc:
            if self.on_finding == "raise":
                raise
            warnings.warn(f"shapewise: shape check skipped: {exc}", ShapewiseWarning,
                          stacklevel=3)
            self.findings = []
        return self.findings


def _import(module: str, what: str, install: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs the '{install}' package: pip install {install} "
                          f"({exc})") from None


def _build_hf() -> type:
    transformers = _import("transformers", "ShapewiseCallback", "transformers")

    class ShapewiseCallback(_Settings, transformers.TrainerCallback):
        """Hugging Face TrainerCallback: check the model's shapes at train start."""

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                           **kwargs: Any) -> None:
            if model is None or not getattr(state, "is_world_process_zero", True):
                return
            self._check(model, micro_batch=getattr(args, "per_device_train_batch_size", None))

    return ShapewiseCallback


def _build_lightning() -> type:
    try:
        base = importlib.import_module("lightning.pytorch").Callback
    except ImportError:
        base = _import("pytorch_lightning", "ShapewiseLightningCallback",
                       "lightning").Callback

    class ShapewiseLightningCallback(_Settings, base):  # type: ignore[misc, valid-type]
        """PyTorch Lightning Callback: check the module's shapes at train start."""

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if not getattr(trainer, "is_global_zero", True):
                return
            loader = getattr(trainer, "train_dataloader", None)
            batch = getattr(loader, "batch_size", None)
            self._check(pl_module, micro_batch=batch if isinstance(batch, int) else None,
                        example_input=getattr(pl_module, "example_input_array", None))

    return ShapewiseLightningCallback


_BUILDERS = {"ShapewiseCallback": _build_hf, "ShapewiseLightningCallback": _build_lightning}


def __getattr__(name: str) -> Any:
    builder = _BUILDERS.get(name)
    if builder is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = builder()
    cls.__module__ = __name__
    globals()[name] = cls
    return cls


def __dir__() -> list[str]:
    return sorted([*globals(), *_BUILDERS])
