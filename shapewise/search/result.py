"""What a shape search returns (:class:`Recommendation`, its :class:`Candidate` and
:class:`Baseline` rows) and the helper every search reports with (:func:`explain_shape`);
shared by the dense search (:mod:`.recommend`) and the MoE one (:mod:`.moe_recommend`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shapewise.hardware.catalog import GPU
from shapewise.model.params import count_params
from shapewise.model.shape import ModelShape
from shapewise.search.constraints import Constraints
from shapewise.search.model_error import ModelError
from shapewise.search.plans import PlanFit
from shapewise.step import Estimate


def shape_dims(s: ModelShape) -> dict[str, Any]:
    """A shape's dimensions as a search's JSON rows name them (Hugging Face's names)."""
    return {"hidden_size": s.hidden_size, "num_attention_heads": s.num_attention_heads,
            "head_dim": s.head_dim, "num_key_value_heads": s.kv_heads,
            "num_hidden_layers": s.num_hidden_layers, "intermediate_size": s.ffn_size,
            "vocab_size": s.vocab_size}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One evaluated shape: its estimate, parameter count, objective and why."""

    shape: ModelShape
    estimate: Estimate
    params: int
    score: float
    """tokens/s per GPU × params / budget (the objective)"""
    reason: str
    plan: PlanFit | None = None
    """the smallest training plan it fits (None: not assessed)"""
    tokens_per_s: float = 0.0
    """the objective's tokens/s per GPU (:func:`shape_tokens_per_s`, or the whole step
    under a plan); ``estimate.tokens_per_s`` is the whole step of one micro-batch"""

    def to_dict(self) -> dict[str, Any]:
        s, e = self.shape, self.estimate
        return {
            **shape_dims(s), "params": self.params,
            "aspect_ratio": s.hidden_size / s.num_hidden_layers,
            "tokens_per_s": self.tokens_per_s,
            "step_tokens_per_s": e.tokens_per_s, "mfu": e.mfu, "model_tflops": e.model_tflops,
            "step_time_s": e.step_time_s, "memory_bytes": e.memory_bytes,
            "score": self.score, "reason": self.reason,
            "plan": self.plan.to_dict() if self.plan else None, "shape": s.to_dict(),
            **({"num_experts": s.num_experts, "num_experts_per_tok": s.num_experts_per_tok,
                "moe_intermediate_size": s.moe_intermediate_size,
                "active_params": count_params(s, active=True)} if s.is_moe else {}),
        }


@dataclass(frozen=True, slots=True)
class Baseline:
    """A shape the recommendation is compared with, and the gain against it."""

    label: str
    """'your baseline' or the published names with these dimensions"""
    source: str
    candidate: Candidate
    gain: float
    """best score / this score - 1"""
    within_error: bool
    """|gain| below the model's documented error for the GPU"""
    caveats: tuple[str, ...] = ()
    """why the comparison is not like for like (outside the aspect band, far off the budget)"""

    def gain_text(self) -> str:
        g = f"{self.gain:+.1%}"
        if self.within_error:
            g += " (within model error)"
        return g + "".join(f"; {c}" for c in self.caveats)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "source": self.source, "gain": self.gain,
                "within_model_error": self.within_error, "caveats": list(self.caveats),
                **self.candidate.to_dict()}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The winning shape, the ranked distinct candidates, and the baselines it beat (or not)."""

    best: ModelShape
    estimate: Estimate
    candidates: tuple[Candidate, ...]
    baselines: tuple[Baseline, ...]
    """the user's baseline first (if given), then the nearest published shapes"""
    model_error: ModelError
    budget: float
    gpu: str
    n_trials: int
    """Optuna trials run (0 when the space was priced whole)"""
    seed: int
    method: str = "exhaustive"
    """'exhaustive' (every shape of the space priced), 'optuna', or 'grid' (arch='moe')"""
    evaluated: int = 0
    """shapes priced"""
    constraints: Constraints = field(default_factory=Constraints)
    notes: tuple[str, ...] = field(default=())
    inputs: dict[str, Any] = field(default_factory=dict)
    """what was asked: arch, dtype, seq_len, tp, micro_batch, tolerance, recompute, ..."""

    @property
    def baseline(self) -> Candidate | None:
        """The first baseline's candidate (the user's, else the nearest published)."""
        return self.baselines[0].candidate if self.baselines else None

    @property
    def gain(self) -> float | None:
        """Gain against the first baseline (None without one)."""
        return self.baselines[0].gain if self.baselines else None

    @property
    def plan(self) -> PlanFit | None:
        return self.candidates[0].plan

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget, "gpu": self.gpu, "n_trials": self.n_trials,
            "seed": self.seed, "method": self.method, "evaluated": self.evaluated,
            "inputs": dict(self.inputs), "constraints": self.constraints.to_dict(),
            "gain_over_baseline": self.gain,
            "model_error": {"fraction": self.model_error.fraction,
                            "source": self.model_error.source,
                            "documented": self.model_error.documented},
            "best": self.candidates[0].to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "baselines": [b.to_dict() for b in self.baselines],
            "candidates": [c.to_dict() for c in self.candidates],
            "notes": list(self.notes),
        }


def explain_shape(shape: ModelShape, est: Estimate, tp: int = 1,
                  gpu: GPU | None = None) -> str:
    """One line: the alignment and wave rules the shape meets or breaks."""
    from shapewise.cost.gemm import explain_gemm

    good, bad = [], []
    d, h = shape.head_dim, shape.hidden_size
    (good if d % 64 == 0 else bad).append(f"head dim {d}")
    (good if h % 64 == 0 else bad).append(f"hidden {h}")
    if shape.arch != "vit" and shape.vocab_size:
        v = shape.vocab_size
        (good if v % (64 * tp) == 0 else bad).append(f"vocab {v}")
    if shape.activation == "swiglu":
        f = shape.ffn_size
        (good if f % 64 == 0 else bad).append(f"FFN {f}")
    # the forward GEMM that loses most to wave quantization (idle slots in its waves)
    worst = None
    for op in est.breakdown:
        if op.kind == "gemm" and op.phase == "forward" and op.name != "patch_embed":
            ex = explain_gemm(*op.shape, gpu=gpu or est.gpu, dtype=est.dtype, suggest=False)
            use = ex.tiles / (ex.waves * ex.slots)
            if worst is None or use < worst[1]:
                worst = (op.name, use)
    parts = []
    if good:
        parts.append("ok: " + ", ".join(good))
    if bad:
        parts.append("not a multiple of 64: " + ", ".join(bad))
    if worst is not None and worst[1] < 0.9:
        parts.append(f"{worst[0]} uses {worst[1]:.0%} of its wave slots")
    return "; ".join(parts)
