"""The few whole-step parameters, fitted on published training runs (docs/cost-model.md).

Kernel times come from the kernel-level calibration (fitted on kernel microbenchmarks, run
at burst clocks for milliseconds). A training run adds what a microbenchmark never sees:

``sustained_clock``
    A GPU that runs GEMMs for hours sits at its power and thermal limit and clocks below the
    burst clock the microbenchmarks saw: math-bound kernels (GEMMs, attention) run at this
    fraction of their microbenchmarked rate. Per GPU (it is a property of the part and its
    power limit); stored in the GPU profile (``sustained_clock`` and its source).
``kernel_overhead_s``
    Host time per kernel launch the GPU waits for in eager PyTorch: between two kernels
    the GPU idles while Python and the dispatcher issue the next (and the allocator and
    FSDP hooks run). It costs the same for every kernel, so small kernels (small models,
    short sequences) lose the largest share.
``step_overhead_s``
    Fixed host time per optimizer step: the optimizer's per-tensor bookkeeping, gradient
    clipping's norm reduction and its host sync, the data loader and the logging.
``overlap_efficiency``
    η, the share of a compute window that overlapped data-parallel communication can use
    (NCCL shares the SMs and memory bandwidth with the compute it hides behind).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Bytes the optimizer step moves per parameter of this GPU's shard (read fp32 master
#: weight, Adam m and v and the gradient: 16; write master, m and v: 12; the clipping norm
#: reads the gradient again: 4; the bf16 working copy is rewritten: 2)
OPTIMIZER_STEP_BYTES = 34


@dataclass(frozen=True, slots=True, kw_only=True)
class StepParams:
    """Whole-step parameters of one GPU (see the module doc)."""

    sustained_clock: float = 1.0
    kernel_overhead_s: float = 0.0
    step_overhead_s: float = 0.0
    overlap_efficiency: float = 1.0
    source: str = "default"


#: Fitted by ``scripts/validate_steps.py --fit`` on the 209 bf16 rows of
#: llmfoundry_mpt_throughput.csv (mosaicml/llm-foundry@8c8dd48f, benchmarking README; see
#: docs/cost-model.md "Whole steps"), together with the profiles' ``sustained_clock``.
#: ``kernel_overhead_s`` is not fitted: every kernel of those runs is long (a micro-batch of
#: 8k-130k tokens), and fits with it held at 0 or 10 us or left free differ by about a point
#: of median error; it stays 0 until runs with small kernels can measure it.
HOST = {"kernel_overhead_s": 0.0, "step_overhead_s": 0.0669, "overlap_efficiency": 0.32}


def step_params(gpu: Any) -> StepParams:
    """The step parameters of ``gpu`` (its profile's sustained clock, shared host terms)."""
    clock = getattr(gpu, "sustained_clock", None)
    return StepParams(sustained_clock=float(clock) if clock else 1.0, **HOST,
                      source="fitted" if clock else "default")
