"""Wave quantization (SW009): a GEMM whose last wave of tiles leaves most of the GPU idle.

See the package docstring for how a rule is declared.
"""

from __future__ import annotations

from collections.abc import Callable

from shapewise.check.rules.base import (
    VOCAB_MULTIPLE,
    WAVE_FILL_THRESHOLD,
    WAVE_MIN_GAIN,
    WAVE_MIN_STEP_GAIN,
    WAVE_WINDOW,
    CheckContext,
    Finding,
    Rule,
    make_finding,
    rank_flops,
    register,
    sizes_near,
    triple,
)
from shapewise.check.rules.traced import reprice, trace_step
from shapewise.cost.gemm import explain_gemm

#: What each GEMM dimension of a layer op is, for messages.
_OP_DIMS: dict[str, tuple[str, str, str]] = {
    "qkv_proj": ("b·s", "(a+2g)·d/t", "h"),
    "out_proj": ("b·s", "h", "a·d/t"),
    "mlp_up": ("b·s", "f/t", "h"),
    "mlp_gate_up": ("b·s", "2f/t", "h"),
    "mlp_down": ("b·s", "h", "f/t"),
    "logits": ("b·s", "v/t", "h"),
    "patch_embed": ("b·patches", "h", "c·p²"),
    "classifier": ("b", "labels", "h"),
}


def _best_wave_fix(ctx: CheckContext, m: int, n: int, k: int, batch: int,
                   cost: Callable[[int, int, int], float]) -> tuple[str, int, float] | None:
    """(dim, new size, per-FLOP gain) of the best size within WAVE_WINDOW for one dim."""
    base = cost(m, n, k) / (m * n * k)
    best = None
    for dim, size in (("n", n), ("k", k)):  # b·s is SW004's and the data's, not the model's
        if size < 2 * VOCAB_MULTIPLE:
            continue
        for c in sizes_near(size, VOCAB_MULTIPLE, WAVE_WINDOW):
            if c == size:
                continue
            dims = {"m": m, "n": n, "k": k, dim: c}
            score = cost(dims["m"], dims["n"], dims["k"]) / (dims["m"] * dims["n"] * dims["k"])
            gain = base / score
            if best is None or gain > best[2] or (gain == best[2] and abs(c - size) <
                                                  abs(best[1] - size)):
                best = (dim, c, gain)
    return best if best is not None and best[2] >= WAVE_MIN_GAIN else None


def _wave_quantization(ctx: CheckContext) -> list[Finding]:
    """SW009, as its entry below says."""
    threshold = WAVE_FILL_THRESHOLD
    out = []
    rows: list[tuple[str, int, int, int, int, int]] = []  # name, m, n, k, batch, count
    if ctx.trace is not None:
        for g in ctx.trace.gemms:
            if g.phase == "forward":
                rows.append((g.name or "(unnamed)", g.m, g.n, g.k, g.batch, g.count))
    elif ctx.estimate is not None:
        for op in ctx.estimate.breakdown:
            if op.kind == "gemm" and op.phase == "forward":
                m, n, k = op.shape
                rows.append((op.name, m, n, k, 1, op.count))
    for name, m, n, k, batch, count in rows:
        if n % ctx.align or k % ctx.align:
            continue
        ex = explain_gemm(m, n, k, gpu=ctx.gpu, dtype=ctx.dtype, batch=batch, suggest=False)
        if ex.last_wave_fill >= threshold or ex.bound != "compute":
            continue

        def cost(mm: int, nn: int, kk: int, _b: int = batch) -> float:
            return triple(ctx, mm, nn, kk, _b)

        fix = _best_wave_fix(ctx, m, n, k, batch, cost)
        if fix is None:
            continue
        dim, size, gain = fix
        old_size = [m, n, k]["mnk".index(dim)]
        if ctx.trace is not None:  # the GEMM as traced, forward and backward
            group = [g for g in ctx.trace.gemms if (g.name or "(unnamed)") == name]
            t0, t1, f0, f1 = reprice(ctx, group,
                                      lambda x, _o=old_size, _s=size: _s if x == _o else x)
            gain = (t0 / f0) / (t1 / f1)
            step = trace_step(ctx, t0 - t1, f1 - f0, "throughput")
        else:
            new = {"m": m, "n": n, "k": k, dim: size}
            t0, t1 = cost(m, n, k), cost(new["m"], new["n"], new["k"])
            f0 = 3 * 2.0 * batch * m * n * k
            f1 = 3 * 2.0 * batch * new["m"] * new["n"] * new["k"]
            est = ctx.estimate
            assert est is not None
            T, F = est.step_time_s, rank_flops(est)
            step = (T / F) / ((T - (t0 - t1) * count) / (F + (f1 - f0) * count))
        if step is None or step < WAVE_MIN_STEP_GAIN or gain < WAVE_MIN_GAIN:
            continue
        meaning = _OP_DIMS.get(name, ("m", "n", "k"))["mnk".index(dim)]
        label = f"{dim} ({meaning})" if meaning != dim else dim
        bm, bn = ex.tile
        out.append(make_finding(
            ctx, "SW009",
            message=(f"{name} GEMM {m}×{n}×{k}: {ex.tiles} tiles of {bm}×{bn} on "
                     f"{ex.slots} slots make {ex.waves} waves, the last {ex.last_wave_fill:.0%}"
                     f" full; {label} {size} instead of {old_size} fills them better"),
            field=f"{name}.{dim}", value=old_size, fix=size,
            gemm_speedup=gain, step_speedup=step, kernel=f"{name} GEMM", basis="throughput",
            detail=("a GEMM-level fix: the model field behind it also moves other GEMMs"
                    if ctx.trace is None else "")))
    return out


wave_quantization = register(Rule(
    id="SW009", name="wave-quantization", field="gemm",
    find=_wave_quantization, traced=_wave_quantization,
    doc="""Every GEMM: a last wave of tiles at least half full.

    Why: a GEMM's output tiles run in waves of (SMs × CTAs per SM); a partial last wave costs
    a whole one (co-design.md: 109 tiles on A100's 108 SMs take two waves). Flagged when the
    last wave is under 50% full and an N or K within 5% (multiples of 64) runs at least 5%
    more TFLOP/s by the cost model, for at least 0.5% of the step. Fix: that size for that
    GEMM dimension (the M, b·s, is SW004's). Speedup on the "throughput" basis, counting
    this GEMM's change alone. Aligned GEMMs only (misaligned ones are the alignment rules').
    """,
))
