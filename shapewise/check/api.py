"""The check as a function call: ``check_shape`` and ``check_before_training``.

>>> import shapewise as sw
>>> findings = sw.check_shape("tests/fixtures/hf/gpt2/config.json", gpu="a100")  # doctest: +SKIP
>>> print(findings[0].summary())  # doctest: +SKIP
vocab_size 50257 → 50304: logits GEMM 1.46× faster, step 8.7% faster

Inputs: anything :func:`shapewise.model.load.load_shape` reads (a :class:`ModelShape`; a
Hugging Face ``config.json``, path, folder or dict; Megatron-LM arguments; a nanoGPT config
file, read, never executed; a preset name; the JSON of ``recommend --json`` or ``estimate
--json``), or a live ``torch.nn.Module``, traced on the meta device (no weights allocated,
no GPU needed). A shapewise document's settings (sequence length, micro-batch, tp) are the
check's defaults, as a Megatron config's are.

The GPU: the one given; else, when torch is already imported (a training script),
``shapewise.hardware.detect.detect_gpu()``; else :data:`DEFAULT_GPU`, and every finding's
detail says the GPU was assumed. Nothing here imports torch unless given a module.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shapewise.check.rules import (
    SEVERITIES,
    CheckContext,
    Finding,
    Severity,
    run_rules,
    shape_context,
)
from shapewise.errors import InputError, ShapewiseWarning
from shapewise.hardware.catalog import GPU, canonical_dtype, get_gpu, load_profile
from shapewise.model.load import load_shape
from shapewise.model.run_defaults import DEFAULT_SEQ_LEN, default_micro_batch, default_seq_len
from shapewise.model.shape import ModelShape, check_limit

#: Priced on when no GPU is given or detected: the most common pre-training GPU today.
DEFAULT_GPU = "h100-sxm"

#: Default sequence length cap for text models (the shared rule: model.run_defaults.default_seq_len)
DEFAULT_MAX_SEQ_LEN = DEFAULT_SEQ_LEN

OnFinding = Literal["warn", "raise", "ignore"]

class ShapeCheckError(RuntimeError):
    """Raised by ``check_before_training(on_finding="raise")``; ``.findings`` holds them."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        lines = "\n".join(f"  {format_finding(f)}" for f in findings)
        super().__init__(f"shapewise: {len(findings)} shape finding(s) at or above the "
                         f"threshold:\n{lines}")


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Findings of one input, with what was checked and under which settings."""

    source: str
    """'hf', 'megatron', 'nanogpt', 'shape' or 'module'"""
    name: str
    """the model's name (config name, file, or module class)"""
    path: str
    gpu: str
    """GPU id the speedups are priced on"""
    gpu_note: str
    """'' when the GPU was given; otherwise how it was chosen"""
    dtype: str
    tp: int
    pipeline_stages: int
    micro_batch: int | None
    seq_len: int | None
    findings: list[Finding]
    notes: tuple[str, ...] = field(default=())
    step_time_s: float | None = None
    """predicted step (ModelShape inputs) or traced GEMM + attention time (modules)"""

    def worst(self) -> Severity | None:
        """The highest severity among the findings, or None when clean."""
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=SEVERITIES.index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "source": self.source, "name": self.name, "gpu": self.gpu,
            "gpu_note": self.gpu_note, "dtype": self.dtype, "tp": self.tp,
            "pipeline_stages": self.pipeline_stages, "micro_batch": self.micro_batch,
            "seq_len": self.seq_len, "step_time_s": self.step_time_s,
            "notes": list(self.notes), "findings": [f.to_dict() for f in self.findings],
        }


def format_finding(f: Finding) -> str:
    """One line: id, severity, message and the fix with its speedups."""
    return f"{f.rule_id} ({f.severity}): {f.message} [{f.summary()}]"


def resolve_gpu(gpu: str | GPU | None, *, detect: bool = True) -> tuple[GPU, str]:
    """(GPU, note): the one given; a detected one; or DEFAULT_GPU with a note saying so."""
    if gpu is not None:
        return get_gpu(gpu), ""
    if detect:
        found = _detect()
        if found is not None:
            return found, f"GPU detected: {found.id}"
    default = get_gpu(DEFAULT_GPU)
    return default, (f"GPU assumed: {default.id} (none given"
                     + (" or detected" if detect else "") + "; pass gpu=/--gpu)")


def _detect() -> GPU | None:
    """detect_gpu() when torch is already loaded and the module exists; never imports torch
    itself (a config check must stay fast) and never fails the check."""
    if "torch" not in sys.modules:
        return None
    try:
        module = importlib.import_module("shapewise.hardware.detect")
    except ImportError:  # not written yet, or its own imports are missing
        return None
    try:
        found = module.detect_gpu()
    except Exception:  # a detection problem must not stop a training script
        return None
    return found if isinstance(found, GPU) else None


def _setting(name: str, value: Any, stated: Any, default: Any) -> Any:
    chosen = value if value is not None else stated if stated is not None else default
    if chosen is None:
        return None
    if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 1:
        raise InputError(f"{name}: must be a positive integer, got {chosen!r}")
    return check_limit(name, chosen)


def _is_module(obj: Any) -> bool:
    from shapewise.check.trace import is_torch_module

    return is_torch_module(obj)


def _ep(ep: Any) -> int:
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
        raise InputError(f"ep: must be a positive integer, got {ep!r}")
    return ep


def analyze(
    model_or_config: Any, *, gpu: str | GPU | None = None, tp: int | None = None,
    micro_batch: int | None = None, seq_len: int | None = None,
    pipeline_stages: int | None = None, dtype: str = "bf16", example_input: Any = None,
    rules: Iterable[str] | None = None, detect: bool = True, plan: Any = None,
    attention_backend: str | None = None,
    ep: int | None = None,
) -> CheckReport:
    """The full report behind :func:`check_shape` (what was checked, settings, findings).

    ``ep``: the expert-parallel size a mixture of experts runs with (SW013, SW014; default
    the plan's, else 1)."""
    g, gpu_note = resolve_gpu(gpu, detect=detect)
    dt = canonical_dtype(dtype)
    g.peak_flops(dt)  # InputError naming dtype when the GPU lacks it

    if _is_module(model_or_config):
        return _analyze_module(model_or_config, g, gpu_note, dt, tp=tp,
                               micro_batch=micro_batch, seq_len=seq_len,
                               example_input=example_input, rules=rules)

    if isinstance(model_or_config, ModelShape | Mapping | str | os.PathLike):
        cfg = load_shape(model_or_config)
    else:
        raise InputError(
            "model_or_config: expected a ModelShape, a config path or dict, or a "
            f"torch.nn.Module, got {type(model_or_config).__name__}"
        )
    where = f"{cfg.path}: " if cfg.path else ""
    t = _setting("tp", tp, cfg.tp, 1)
    pp = _setting("pipeline_stages", pipeline_stages, cfg.pipeline_stages, 1)
    b = _setting("micro_batch", micro_batch, cfg.micro_batch, None)
    s = _setting("seq_len", seq_len, cfg.seq_len, None)
    notes = list(cfg.notes)
    for what, stated, used in (("GPU", cfg.gpu, g.id), ("dtype", cfg.dtype, dt)):
        if stated is not None and stated != used:  # a shapewise document names its own
            notes.append(f"{what}: the document was computed for {stated}; checked on {used}")
    shape = cfg.shape
    if b is None:  # per architecture: a ViT's default is a batch of images, said so
        b, why = default_micro_batch(shape)
        if shape.arch == "vit" and plan is None:  # (a plan states its own micro-batch)
            notes.append(why)
    if s is None and shape.arch != "vit":
        s, why = default_seq_len(shape)  # the one rule every command uses
        notes.append(why)
    try:
        if plan is not None:  # the plan's tp, micro-batch and stages are the settings
            t, b, pp = plan.tp, plan.micro_batch, plan.pp
        ctx = shape_context(cfg.shape, gpu=g, dtype=dt, tp=t, micro_batch=b, seq_len=s,
                            pipeline_stages=pp, note=gpu_note, plan=plan,
                            attention_backend=(attention_backend if attention_backend
                                               is not None else cfg.attention_backend),
                            ep=_ep(ep if ep is not None else getattr(plan, "ep", 1)))
    except InputError as exc:
        raise InputError(f"{where}{exc}") from None
    findings = run_rules(ctx, rules)
    if ctx.estimate is not None and pp == 1:  # (the estimate holds every layer: no pipeline)
        notes += [n for n in ctx.estimate.notes if n.startswith("memory:")]
    return CheckReport(
        source=cfg.source, name=cfg.shape.name or os.path.basename(cfg.path), path=cfg.path,
        gpu=g.id, gpu_note=gpu_note, dtype=dt, tp=t, pipeline_stages=pp, micro_batch=b,
        seq_len=ctx.seq_len, findings=findings, notes=tuple(notes),
        step_time_s=ctx.estimate.step_time_s if ctx.estimate else None,
    )


def _analyze_module(model: Any, g: GPU, gpu_note: str, dt: str, *, tp: int | None,
                    micro_batch: int | None, seq_len: int | None, example_input: Any,
                    rules: Iterable[str] | None) -> CheckReport:
    from shapewise.check.rules import trace_cost
    from shapewise.check.trace import trace_module

    if tp not in (None, 1):
        raise InputError("tp: a traced module is checked as it runs (one rank); build it at "
                         "its per-rank sizes, or check its config with tp=")
    b = _setting("micro_batch", micro_batch, None, 1)
    s = _setting("seq_len", seq_len, None, None)
    trace = trace_module(model, micro_batch=b, seq_len=s, example_input=example_input)
    ctx = CheckContext(gpu=g, dtype=dt, micro_batch=trace.micro_batch or b,
                       seq_len=trace.seq_len, trace=trace, note=gpu_note)
    findings = run_rules(ctx, rules)
    step = trace_cost(ctx)[0] if trace.gemms or trace.attentions else None
    return CheckReport(
        source="module", name=trace.model, path="", gpu=g.id, gpu_note=gpu_note, dtype=dt,
        tp=1, pipeline_stages=1, micro_batch=trace.micro_batch, seq_len=trace.seq_len,
        findings=findings, notes=trace.notes, step_time_s=step,
    )


def check_shape(
    model_or_config: Any, *, gpu: str | GPU | None = None, tp: int | None = None,
    micro_batch: int | None = None, seq_len: int | None = None,
    pipeline_stages: int | None = None, dtype: str = "bf16", example_input: Any = None,
    rules: Iterable[str] | None = None,
    profile: str | None = None, plan: Any = None, attention_backend: str | None = None,
    ep: int | None = None,
) -> list[Finding]:
    """Findings about ``model_or_config``'s shapes on ``gpu``, errors first.

    ``tp``, ``micro_batch``, ``pipeline_stages`` and ``seq_len`` default to what the config
    states (Megatron arguments, a nanoGPT file), else 1, 1, 1 and the model's context
    (``max_position_embeddings``). ``example_input`` (modules only): what the module is
    called with, see :func:`shapewise.check.trace.trace_module`. ``rules``: ids to run
    (default: all of :data:`shapewise.check.rules.RULES`). ``plan`` (a
    :class:`shapewise.Plan`): the parallel plan the step runs under, which the plan rules
    (SW016-SW019) judge; its tp, micro-batch and stages replace those settings.
    ``attention_backend``: the attention kernel the run uses (default: what the config
    states, else PyTorch's SDPA dispatch), which SW020 compares with the others.

    >>> from shapewise import ModelShape
    >>> fs = check_shape(ModelShape.gpt(hidden_size=768, num_attention_heads=12,
    ...                  num_hidden_layers=12, vocab_size=50257), gpu="a100")
    >>> fs[0].rule_id, fs[0].fix
    ('SW001', 50304)
    """
    if profile is not None:  # a profile file (e.g. from 'shapewise fit') wins over gpu
        gpu = load_profile(profile)
    return analyze(model_or_config, gpu=gpu, tp=tp, micro_batch=micro_batch,
                   seq_len=seq_len, pipeline_stages=pipeline_stages, dtype=dtype,
                   example_input=example_input, rules=rules, plan=plan,
                   attention_backend=attention_backend, ep=ep).findings


def check_before_training(
    model_or_config: Any, *, gpu: str | GPU | None = None, on_finding: OnFinding = "warn",
    fail_on: Severity = "warning", tp: int | None = None, micro_batch: int | None = None,
    seq_len: int | None = None, pipeline_stages: int | None = None, dtype: str = "bf16",
    example_input: Any = None, rules: Iterable[str] | None = None, stacklevel: int = 2,
    profile: str | None = None,
) -> list[Finding]:
    """Run :func:`check_shape` at the top of a training script and act on the findings.

    ``on_finding``: ``"warn"`` (default) issues each finding as a :class:`ShapewiseWarning`
    (filter them with ``warnings.filterwarnings("ignore", category=ShapewiseWarning)``, or
    turn them into errors with ``-W error::shapewise.ShapewiseWarning``); ``"raise"`` raises
    :class:`ShapeCheckError` when a finding reaches ``fail_on`` (and warns the rest);
    ``"ignore"`` only returns them. Returns the findings in every case. ``stacklevel`` is
    ``warnings.warn``'s, seen from this function: 2 (default) points the warnings at the
    line that called it; a wrapper adds one per frame of its own.
    """
    if on_finding not in ("warn", "raise", "ignore"):
        raise InputError(f"on_finding: must be 'warn', 'raise' or 'ignore', got {on_finding!r}")
    if fail_on not in SEVERITIES:
        raise InputError(f"fail_on: must be one of {', '.join(SEVERITIES)}, got {fail_on!r}")
    if profile is not None:  # a profile file (e.g. from 'shapewise fit') wins over gpu
        gpu = load_profile(profile)
    report = analyze(model_or_config, gpu=gpu, tp=tp, micro_batch=micro_batch,
                     seq_len=seq_len, pipeline_stages=pipeline_stages, dtype=dtype,
                     example_input=example_input, rules=rules)
    findings = report.findings
    if on_finding == "ignore":
        return findings
    failing = [f for f in findings if SEVERITIES.index(f.severity) >= SEVERITIES.index(fail_on)]
    where = f" on {report.gpu}" + (f" ({report.gpu_note})" if report.gpu_note else "")
    for f in findings:
        if on_finding == "raise" and f in failing:
            continue
        # stacklevel 2 (the default) is the line that called check_before_training
        warnings.warn(f"shapewise {format_finding(f)}{where}", ShapewiseWarning,
                      stacklevel=stacklevel)
    if on_finding == "raise" and failing:
        raise ShapeCheckError(failing)
    return findings

