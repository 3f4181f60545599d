"""The shape rules, each a declared :class:`Rule` under a stable id (``SW001``...).

A rule is a function of a :class:`CheckContext` (a :class:`ModelShape` with its run
settings and cost-model estimate, or a :class:`Trace` of a live module) returning
:class:`Finding` objects; :data:`RULES` maps each id to it, in id order, and
:func:`run_rules` runs them. The machinery (findings, context, pricing, registry) is in
:mod:`~shapewise.check.rules.base`; the rules are grouped by what they judge:

==========================================  =================================================
module                                      rules
==========================================  =================================================
:mod:`~shapewise.check.rules.alignment`     SW001 vocab, SW002 hidden, SW004 tokens,
                                            SW008 FFN, SW011 traced GEMM sizes
:mod:`~shapewise.check.rules.heads`         SW003 head dim
:mod:`~shapewise.check.rules.parallel`      SW005 heads per rank, SW006 tp splits,
                                            SW007 pipeline layers, SW010 tp oversized
:mod:`~shapewise.check.rules.waves`         SW009 wave quantization
:mod:`~shapewise.check.rules.moe`           SW012 expert FFN, SW013 experts per ep rank,
                                            SW014 tokens per expert (mixtures of experts)
:mod:`~shapewise.check.rules.schedule`      SW016 layers per virtual stage, SW017
                                            micro-batches per stage, SW018 pipeline bubble,
                                            SW019 plan memory (with ``plan=``)
:mod:`~shapewise.check.rules.attention`     SW020 attention backend, SW021 attention
                                            fallback
==========================================  =================================================

How to add a rule
-----------------
One block, in the module of its theme (or a new module imported below). A rule the
training cannot run past is an error, unpriced::

    layers_per_virtual_stage = register(Rule(
        id="SWnnn", name="layers-per-virtual-stage", field="num_hidden_layers",
        severity="error",
        doc=\"\"\"Layers divisible by pp·v (interleaved pipeline stages).

        Why: ... (with its source). Fix: the nearest multiple. Severity: error.
        \"\"\",
        applies=lambda c: c.shape is not None and ...,   # the predicate: it is broken
        fix=lambda c: ...,                                # the value to use instead
        message=lambda c, fix: f"num_hidden_layers {c.shape.num_hidden_layers} ...; use {fix}",
    ))

A rule about speed says what its fix changes, and the machinery prices it::

    ffn_multiple = register(Rule(
        id="SWnnn", name="...", field="intermediate_size", doc=...,
        applies=..., fix=...,
        change=lambda c, fix: Change(shape={"intermediate_size": fix}),
        kernels=("mlp_up", "mlp_gate_up", "mlp_down"), kernel="MLP GEMMs",
        basis="throughput",
        severity="info",   # the floor: raised to warning when it buys >= 2% of the step
        message=lambda c, fix: ...,
        detail=lambda c, fix, new: ...,   # new: the step with the fix (None: unpriced)
    ))

* ``id``: the next free ``SWnnn``; ids are never renumbered nor reused. Add the rule to
  docs/checks.md (its table and a section with the source) in the same commit.
* ``applies`` reads the context (``c.shape``, ``c.tp``, ``c.micro_batch``, ``c.seq_len``,
  ``c.pipeline_stages``, ``c.estimate``...) and returns True when the rule is broken;
  a new run setting goes into :class:`CheckContext` (and ``shape_context``) first.
* pricing: ``change`` says what the fix changes (:class:`Change`: shape fields, tp,
  micro-batch, seq_len); the rule machinery prices the changed step through
  ``shapewise.estimate`` (whose ops are the shared :mod:`shapewise.ops`) and reports the
  kernel speedup on ``kernels`` and the step speedup on ``basis``. A rule that prices a
  kernel alone uses ``ctx.gemm`` / ``ctx.attention`` (the shared ops, through
  :func:`shapewise.cost.price.price`). No ``change``: the finding is unpriced (errors).
* ``severity``: ``"error"`` when the training cannot run; otherwise the floor
  (``"info"``, or ``"warning"`` for a size below 16-byte alignment), raised to warning
  when the fix saves :data:`WARNING_STEP_LOSS` of the step. ``only_if_faster=True`` drops
  a finding whose priced fix does not speed the step up.
* A rule whose findings do not fit one field and one fix (one finding per GEMM, a fix
  chosen among priced candidates) gives ``find=`` (a function of the context returning
  findings, built with :func:`make_finding`); one that also judges traced modules gives
  ``traced=``.
* Test it in tests/check/test_rules.py: when it fires, when it stays quiet, and that its
  speedup is the cost model's.
"""

from __future__ import annotations

# the rule modules register their rules on import (RULES is kept in id order)
from shapewise.check.rules import (  # noqa: F401
    alignment,
    attention,
    heads,
    moe,
    parallel,
    schedule,
    waves,
)
from shapewise.check.rules.alignment import (
    ffn_size,
    gemm_alignment,
    hidden_alignment,
    tokens_alignment,
    vocab_alignment,
)
from shapewise.check.rules.base import (
    FFN_MIN_GAIN,
    FFN_TOLERANCE,
    FFN_WINDOW,
    HEAD_DIM_MAX,
    HEAD_DIM_MIN_MULTIPLE,
    HEAD_DIM_MULTIPLE,
    HIDDEN_MULTIPLE,
    MAX_CANDIDATES,
    MIN_ALIGN,
    RULE_ENTRIES,
    RULE_NAMES,
    RULES,
    SEVERITIES,
    TOKEN_MULTIPLE,
    VOCAB_MULTIPLE,
    WARNING_STEP_LOSS,
    WAVE_FILL_THRESHOLD,
    WAVE_MIN_GAIN,
    WAVE_MIN_STEP_GAIN,
    WAVE_WINDOW,
    Basis,
    Change,
    CheckContext,
    Finding,
    Rule,
    RuleFn,
    Severity,
    make_finding,
    register,
    run_rules,
    shape_context,
    tp_problems,
)
from shapewise.check.rules.heads import head_dim
from shapewise.check.rules.parallel import (
    heads_per_rank,
    pipeline_layers,
    tp_divisibility,
    tp_oversized,
)
from shapewise.check.rules.traced import trace_cost
from shapewise.check.rules.waves import wave_quantization

__all__ = [
    "FFN_MIN_GAIN", "FFN_TOLERANCE", "FFN_WINDOW", "HEAD_DIM_MAX", "HEAD_DIM_MIN_MULTIPLE",
    "HEAD_DIM_MULTIPLE", "HIDDEN_MULTIPLE", "MAX_CANDIDATES", "MIN_ALIGN",
    "RULES", "RULE_ENTRIES", "RULE_NAMES", "SEVERITIES", "TOKEN_MULTIPLE", "VOCAB_MULTIPLE",
    "WARNING_STEP_LOSS", "WAVE_FILL_THRESHOLD", "WAVE_MIN_GAIN", "WAVE_MIN_STEP_GAIN",
    "WAVE_WINDOW", "Basis", "Change", "CheckContext", "Finding", "Rule", "RuleFn", "Severity",
    "ffn_size", "gemm_alignment", "head_dim", "heads_per_rank", "hidden_alignment",
    "make_finding", "pipeline_layers", "register", "run_rules", "shape_context",
    "tokens_alignment", "tp_divisibility", "tp_oversized", "tp_problems", "trace_cost",
    "vocab_alignment",
    "wave_quantization",
]
