"""Mixture-of-experts rules: the expert FFN's alignment, experts per expert-parallel rank,
and tokens per expert against one wave of the GPU.

SW012 expert FFN alignment, SW013 experts divisible by ep, SW014 tokens per expert. The
expert GEMMs are priced as the step
prices them (:func:`shapewise.cost.moe.moe_mlp_ops`: one grouped GEMM of E/ep experts),
through the shared ops.
"""

from __future__ import annotations

from shapewise.check.rules.base import (
    MIN_ALIGN,
    CheckContext,
    Finding,
    Rule,
    make_finding,
    register,
    round_up,
)
from shapewise.cost.gemm import GemmExplanation, explain_gemm
from shapewise.cost.moe import tokens_per_expert
from shapewise.cost.price import price
from shapewise.model.shape import ModelShape
from shapewise.ops import Gemm

#: The largest micro-batch SW014 proposes, as a multiple of the current one.
MAX_BATCH_GROWTH = 64


def _expert_gemms(ctx: CheckContext, shape: ModelShape, micro_batch: int | None = None
                  ) -> list[Gemm]:
    """The forward grouped GEMMs of one MoE layer on this rank (up, down)."""
    assert ctx.seq_len is not None
    b = micro_batch or ctx.micro_batch
    ep, t = ctx.ep, ctx.tp
    m_e = tokens_per_expert(shape, tokens=b * ctx.seq_len, ep=ep)
    local = shape.num_experts // ep  # type: ignore[operator]
    fe = shape.moe_intermediate_size // t  # type: ignore[operator]
    up = (2 if shape.activation == "swiglu" else 1) * fe
    h = shape.hidden_size
    return [Gemm(m=m_e, n=up, k=h, batch=local, dtype=ctx.dtype),
            Gemm(m=m_e, n=h, k=fe, batch=local, dtype=ctx.dtype)]


def explain_gemm_op(g: Gemm, gpu: object) -> GemmExplanation:
    return explain_gemm(g.m, g.n, g.k, gpu=gpu, dtype=g.dtype, batch=g.batch,  # type: ignore[arg-type]
                        suggest=False)


def _train_time(ctx: CheckContext, gemms: list[Gemm]) -> float:
    """Forward and both backward GEMMs of ``gemms``."""
    return sum(price(x, ctx.gpu) for g in gemms for x in (g, *g.backward()))


def _priceable(ctx: CheckContext) -> bool:
    s = ctx.shape
    return (s is not None and s.is_moe and ctx.seq_len is not None
            and s.num_experts % ctx.ep == 0  # type: ignore[operator]
            and s.moe_intermediate_size % ctx.tp == 0)  # type: ignore[operator]


# ----------------------------------------------------------- SW012 expert FFN alignment
def _expert_ffn(ctx: CheckContext) -> list[Finding]:
    """SW012, as its entry below says."""
    if not _priceable(ctx):
        return []
    shape = ctx.shape
    assert shape is not None
    fe, t, unit = shape.moe_intermediate_size, ctx.tp, ctx.align * ctx.tp
    assert fe is not None
    if fe % unit == 0:
        return []
    fix = min((round_up(fe, unit), (fe // unit) * unit or unit), key=lambda c: (abs(c - fe), c))
    new = shape.replace(moe_intermediate_size=fix)
    old_g, new_g = _expert_gemms(ctx, shape), _expert_gemms(ctx, new)
    old_t, new_t = _train_time(ctx, old_g), _train_time(ctx, new_g)
    # throughput basis: time per expert-GEMM FLOP (the fix changes the FLOPs)
    gain = (old_t / sum(g.flops for g in old_g)) / (new_t / sum(g.flops for g in new_g))
    return [make_finding(
        ctx, "SW012", floor="warning" if (fe // t) % MIN_ALIGN else "info",
        message=(f"moe_intermediate_size {fe} is not a multiple of {unit} "
                 f"({ctx.align} elements = 128 bytes" + (f", × tp {t}" if t > 1 else "")
                 + f"): it is the N of every expert's up-projection and the K of its "
                 f"down-projection; use {fix}"),
        field="moe_intermediate_size", value=fe, fix=fix, gemm_speedup=gain,
        kernel="expert GEMMs", basis="throughput",
        detail=(f"grouped GEMMs of {old_g[0].batch} local experts × {old_g[0].m} tokens: "
                f"{old_t * 1e6:.0f} us → {new_t * 1e6:.0f} us per layer (fwd + bwd)"))]


expert_ffn_alignment = register(Rule(
    id="SW012", name="expert-ffn-alignment", field="moe_intermediate_size", find=_expert_ffn,
    doc="""Expert FFN size a multiple of 64 (128 bytes; 64·tp per rank).

    Why: each expert's FFN width is the N of its up-projection and the K of its
    down-projection, as the dense MLP's is (SW008): tensor cores load 128-byte rows, and a
    width below 16-byte alignment falls back to narrow loads (co-design.md, rule 6: K=10922
    ran at 272.7 TFLOP/s on H100 against 398.4 for K=10944). DeepSeek's 1408 and 2048,
    Qwen3's 768 and Mixtral's 14336 are all multiples of 64. Fix: the nearest multiple of
    64·tp. Speedup: the expert GEMMs, priced as one grouped GEMM of the local experts, on the
    "throughput" basis (the FLOPs change); the step is not repriced.
    """,
))


# -------------------------------------------------------- SW013 experts divisible by ep
def _experts_not_divisible(ctx: CheckContext) -> bool:
    s = ctx.shape
    return s is not None and s.is_moe and s.num_experts % ctx.ep != 0  # type: ignore[operator]


def _ep_fix(ctx: CheckContext) -> int:
    e = ctx.shape.num_experts  # type: ignore[union-attr]
    return max(d for d in range(1, ctx.ep + 1) if e % d == 0)  # type: ignore[operator]


expert_parallel_divisibility = register(Rule(
    id="SW013", name="expert-parallel-divisibility", field="ep", severity="error",
    applies=_experts_not_divisible, fix=_ep_fix,
    doc="""Routed experts divisible by the expert-parallel size.

    Why: expert parallelism places E/ep whole experts on each rank (Megatron-LM's
    num_moe_experts % expert_model_parallel_size == 0 check; DeepSpeed-MoE likewise): an
    uneven split does not start. Fix: the largest ep at most the current one that divides
    the experts. Severity: error (unpriced).
    """,
    message=lambda c, fix: (f"ep {c.ep} does not divide num_experts "
                            f"{c.shape.num_experts}: each expert-parallel rank holds whole "  # type: ignore[union-attr]
                            f"experts; use ep={fix}"),
))


# ------------------------------------------------------- SW014 tokens per expert: a wave
def _short_of(g: Gemm, ex: GemmExplanation) -> str:
    """Why the grouped GEMM ``g`` underfills the GPU ('' when it does not)."""
    if g.m < ex.tile[0]:
        return (f"{g.m} tokens per expert fill {g.m / ex.tile[0]:.0%} of each "
                f"{ex.tile[0]}-row tile")
    if ex.tiles < ex.slots:
        return (f"the {g.batch} local experts' {ex.tiles} tiles fill less than one wave "
                f"({ex.slots} at once)")
    return ""


def _tokens_per_expert(ctx: CheckContext) -> list[Finding]:
    """SW014, as its entry below says."""
    if not _priceable(ctx):
        return []
    shape = ctx.shape
    assert shape is not None
    up = _expert_gemms(ctx, shape)[0]
    why = _short_of(up, explain_gemm_op(up, ctx.gpu))
    if not why:
        return []
    b = ctx.micro_batch
    fix = None
    for grow in range(2, MAX_BATCH_GROWTH + 1):
        g = _expert_gemms(ctx, shape, b * grow)[0]
        if not _short_of(g, explain_gemm_op(g, ctx.gpu)):
            fix = b * grow
            break
    gain = None
    if fix is not None:
        old_g, new_g = _expert_gemms(ctx, shape), _expert_gemms(ctx, shape, fix)
        gain = ((_train_time(ctx, old_g) / sum(g.flops for g in old_g))
                / (_train_time(ctx, new_g) / sum(g.flops for g in new_g)))
    tail = (f"; a micro-batch of {fix} fills them" if fix else
            "; no micro-batch up to 64× does (fewer, larger experts or a larger ep would)")
    return [make_finding(
        ctx, "SW014", floor="info",
        message=f"{why}: the expert GEMMs run below their rate{tail}",
        field="micro_batch", value=b, fix=fix, gemm_speedup=gain, kernel="expert GEMMs",
        basis="throughput",
        detail=(f"up-projection grouped GEMM {up.batch}×({up.m}×{up.n}×{up.k}); tokens per "
                f"expert = b·s·k·ep/E at perfect balance"))]


tokens_per_expert_wave = register(Rule(
    id="SW014", name="tokens-per-expert", field="micro_batch", find=_tokens_per_expert,
    doc="""Tokens per expert enough for whole tiles and one wave of the GPU.

    Why: an MoE layer's experts run as one grouped GEMM over the E/ep local experts, each with
    b·s·k·ep/E tokens (its M). Fine-grained experts (DeepSeek-V3: 256, top-8) at a small
    micro-batch and no expert parallelism give each expert fewer tokens than one tile has
    rows, and padding fills the rest; with few local experts the tiles may not fill the SMs
    once. DeepGEMM's grouped tables on H800: 256-token groups run at 815-932 TFLOP/s,
    8192-token groups at 1100-1350. Fix: the smallest multiple of the micro-batch whose
    experts fill whole tiles and one wave. Speedup: the expert GEMMs on the "throughput"
    basis.
    """,
))
