"""FlashAttention-style fused attention time.

FLOP convention (stated once, used everywhere in shapewise):

* forward = 4 · batch · heads · s_q · s_kv · head_dim (QKᵀ and P·V, 2 FLOPs per MAC);
  a causal mask halves it for s_q = s_kv (the convention of co-design.md §2 and of MFU
  accounting: s²/2 pairs, the diagonal's extra s/2 ignored); queries that follow s_kv − s_q
  cached keys add s_q · (s_kv − s_q) pairs;
* backward (model FLOPs) = 2 × forward (dQ, dK, dV, dP); the kernel also recomputes
  S = QKᵀ, so the backward *kernel* executes 2.5 × forward, which is what its time prices.

The kernel: each CTA owns one (batch, head, query block of BlockM rows) and walks the key
blocks of BlockN columns; a causal mask lets it skip blocks above the diagonal. Head dims
are dispatched to compiled sizes (multiples of 32 up to 256, as FlashAttention-2 does), so a
head dim of 80 runs a 96-wide kernel, and QKᵀ reduces over the head dim in MMA K-steps of
the GPU's alignment (64 bf16 elements on A100 and later), so 80 or 160 pay for 128 or 192
there. GQA changes the bytes read (fewer K/V heads), not the
FLOPs. Head dims that are not a multiple of 8, or above 256, have no fused kernel and fall
back to materialised attention: two batched GEMMs and a softmax over the score matrix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from shapewise.cost.defaults import calibration_of
from shapewise.cost.gemm import _resolve, check_dim, gemm_time
from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, GPU

#: backward kernel work relative to the forward (5 matmuls against 2)
BACKWARD_KERNEL_RATIO = 2.5
#: backward model FLOPs relative to the forward (4 matmuls against 2)
BACKWARD_MODEL_RATIO = 2.0
FUSED_MAX_HEAD_DIM = 256
#: Non-matmul work per (query, key) score in tensor-FLOP equivalents: the exponential and
#: the online-softmax rescale run on the special-function/FP32 units, which are ~256x slower
#: per element than the tensor cores on Hopper (16 vs 4096 FLOP/clk/SM); FlashAttention
#: hides about half of it behind the matmuls, so 128 is assumed. The calibrated attention
#: efficiency is defined at head dim 128, so this term only moves other head dims: smaller
#: heads spend a larger share of their time on softmax (FlashAttention-2 paper, fig. 4-5:
#: head dim 64 runs below head dim 128).
SOFTMAX_PAIR_FLOPS = 128.0
REFERENCE_HEAD_DIM = 128


def visible_pairs(seq_len: int, seq_len_kv: int, causal: bool,
                  window: int | None = None) -> float:
    """(query, key) pairs counted as work; causal queries are the last ``seq_len`` positions.

    Causal: s·(s_kv − s) pairs against the earlier keys plus half of the s×s square. A
    sliding window w (causal only) lets each query see at most w keys: with no cache,
    a triangle of w²/2 then (s − w) rows of w, s·w − w²/2 in all (the same half-diagonal
    convention as without a window, and as :mod:`shapewise.model.flops`).
    """
    if not causal:
        if window is not None:
            raise InputError("window: a sliding window needs causal attention")
        return float(seq_len * seq_len_kv)
    offset = seq_len_kv - seq_len  # query i sees keys 0 .. i + offset
    if offset < 0:
        raise InputError("seq_len_kv: causal attention needs seq_len_kv >= seq_len")
    if window is None or window >= seq_len_kv:
        return seq_len * offset + seq_len * seq_len / 2.0
    # query x sees min(offset + x, w) keys; integrate over x in [0, s)
    if offset >= window:
        return float(seq_len * window)
    x_full = window - offset  # from here on the window is full
    if x_full >= seq_len:
        return seq_len * offset + seq_len * seq_len / 2.0
    return offset * x_full + x_full * x_full / 2.0 + (seq_len - x_full) * window


def attention_flops(*, batch: int, heads: int, seq_len: int, head_dim: int,
                    causal: bool = True, seq_len_kv: int | None = None,
                    backward: bool = False, window: int | None = None) -> float:
    """Model FLOPs of attention forward (or backward, 2× forward); causal counts exactly."""
    skv = seq_len if seq_len_kv is None else seq_len_kv
    if window is not None:
        window = check_dim(window, "window")
    fwd = 4.0 * batch * heads * head_dim * visible_pairs(seq_len, skv, causal, window)
    return fwd * BACKWARD_MODEL_RATIO if backward else fwd


@dataclass(frozen=True, slots=True)
class AttentionExplanation:
    time_s: float
    flops: float
    """model FLOPs of this pass (forward, or backward = 2 × forward)"""
    tflops: float
    path: Literal["fused", "materialized"]
    kernel_head_dim: int
    block: tuple[int, int]
    ctas: int
    waves: int
    compute_s: float
    memory_s: float
    launch_s: float
    calibration: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _validate(batch: int, heads: int, seq_len: int, head_dim: int, kv_heads: int | None,
              seq_len_kv: int | None, window: int | None
              ) -> tuple[int, int, int, int, int, int, int | None]:
    b = check_dim(batch, "batch")
    a = check_dim(heads, "heads")
    s = check_dim(seq_len, "seq_len")
    d = check_dim(head_dim, "head_dim")
    g = a if kv_heads is None else check_dim(kv_heads, "kv_heads")
    if a % g:
        raise InputError(f"kv_heads: {g} must divide heads ({a})")
    skv = s if seq_len_kv is None else check_dim(seq_len_kv, "seq_len_kv")
    w = None if window is None else check_dim(window, "window")  # causal: visible_pairs
    return b, a, s, d, g, skv, w


def explain_attention(
    *, batch: int, heads: int, seq_len: int, head_dim: int, gpu: str | GPU,
    dtype: str = "bf16", causal: bool = True, kv_heads: int | None = None,
    seq_len_kv: int | None = None, backward: bool = False, window: int | None = None,
) -> AttentionExplanation:
    """The breakdown behind :func:`attention_time`."""
    b, a, s, d, g_heads, skv, w = _validate(batch, heads, seq_len, head_dim, kv_heads,
                                            seq_len_kv, window)
    gpu_, dt = _resolve(gpu, dtype)
    cal = calibration_of(gpu_)
    flops = attention_flops(batch=b, heads=a, seq_len=s, head_dim=d, causal=causal,
                            seq_len_kv=skv, backward=backward, window=w)
    launch = cal.launch_us * 1e-6
    calib = "fitted" if cal.status == "fitted" else "spec-derived defaults"
    nbytes = DTYPE_BYTES[dt]
    stream_bw = gpu_.bandwidth * cal.bandwidth_efficiency

    if d % 8 or d > FUSED_MAX_HEAD_DIM or dt not in ("bf16", "fp16", "fp8"):
        return _materialized(b, a, s, d, skv, causal, backward, gpu_, dt, flops, launch,
                             stream_bw, calib)

    kd = min(FUSED_MAX_HEAD_DIM, 32 * math.ceil(d / 32))  # compiled head-dim buckets
    table = gpu_.attention_tiles
    key = min((h for h in table if h >= kd), default=max(table))
    bm, bn = table[key]
    q_blocks = math.ceil(s / bm)
    kv_blocks = math.ceil(skv / bn)
    offset = skv - s
    if causal:
        # key blocks up to the block holding the last query's diagonal; a window also
        # skips the blocks wholly before the first query's oldest visible key
        per_q = [min(kv_blocks, math.ceil((min((i + 1) * bm, s) + offset) / bn))
                 - (0 if w is None else max(0, (i * bm + offset - w + 1) // bn))
                 for i in range(q_blocks)]
    else:
        per_q = [kv_blocks] * q_blocks
    ctas = b * a * q_blocks
    slots = gpu_.sm_count * gpu_.ctas_per_sm
    waves = math.ceil(ctas / slots)
    eff = cal.attention_bwd_efficiency if backward else cal.attention_fwd_efficiency
    work = BACKWARD_KERNEL_RATIO if backward else 1.0
    # QKᵀ reduces over the head dim in MMA K-steps of alignment_bytes (64 bf16 elements on
    # A100 and later), so it pays for d rounded up to that; P·V has d as its N dimension and
    # pays the kernel's 32-multiple. Rate set so that head dim 128 runs at ``eff``.
    align = gpu_.alignment_elements(dt)
    kd_qk = align * math.ceil(d / align)
    per_pair = 2.0 * kd_qk + 2.0 * kd + SOFTMAX_PAIR_FLOPS
    ref = 4.0 * REFERENCE_HEAD_DIM
    sm_rate = gpu_.peak_flops(dt) * eff / gpu_.sm_count * (ref + SOFTMAX_PAIR_FLOPS) / ref
    t_block = work * bm * bn * per_pair / sm_rate
    avg_blocks = sum(per_q) / q_blocks
    # Whole waves of CTAs, each walking its key blocks; the longest CTA bounds the tail.
    compute = t_block * max(waves * avg_blocks, max(per_q))
    # Q and O (and for backward dO, dQ, plus dK, dV) once; K and V once per KV head.
    q_o = 2 * b * a * s * d * nbytes
    k_v = 2 * b * g_heads * skv * d * nbytes
    memory = (q_o + k_v) * (2.0 if backward else 1.0) / stream_bw
    t = max(compute, memory) + launch
    note = ""
    if kd != d:
        note = f"head dim {d} runs the {kd}-wide kernel ({kd / d - 1:.0%} wasted math)"
    return AttentionExplanation(
        time_s=t, flops=flops, tflops=flops / t / 1e12, path="fused", kernel_head_dim=kd,
        block=(bm, bn), ctas=ctas, waves=waves, compute_s=compute, memory_s=memory,
        launch_s=launch, calibration=calib, note=note,
    )


def _materialized(b: int, a: int, s: int, d: int, skv: int, causal: bool, backward: bool,
                  gpu: GPU, dt: str, flops: float, launch: float, stream_bw: float,
                  calib: str) -> AttentionExplanation:
    """No fused kernel: S = QKᵀ and O = P·V as batched GEMMs plus a softmax pass over S."""
    qk = gemm_time(s, skv, d, gpu=gpu, dtype=dt, batch=b * a)
    pv = gemm_time(s, d, skv, gpu=gpu, dtype=dt, batch=b * a)
    score_bytes = b * a * s * skv * DTYPE_BYTES[dt]
    softmax = 2 * score_bytes / stream_bw + launch  # read S, write P
    t = qk + pv + softmax
    if backward:  # dV, dP, dS (softmax backward), dQ, dK
        t = 2 * (qk + pv) + 3 * score_bytes / stream_bw + launch
    reason = (f"head dim {d} is not a multiple of 8" if d % 8
              else f"head dim {d} is above {FUSED_MAX_HEAD_DIM}" if d > FUSED_MAX_HEAD_DIM
              else f"no fused kernel for {dt}")
    return AttentionExplanation(
        time_s=t, flops=flops, tflops=flops / t / 1e12, path="materialized",
        kernel_head_dim=d, block=(0, 0), ctas=0, waves=0, compute_s=t - launch,
        memory_s=2 * score_bytes / stream_bw, launch_s=launch, calibration=calib,
        note=f"{reason}: no FlashAttention kernel, the s×s scores are materialised"
        + (" (causal mask applied after the full product)" if causal else ""),
    )


def attention_time(
    *, batch: int, heads: int, seq_len: int, head_dim: int, gpu: str | GPU,
    dtype: str = "bf16", causal: bool = True, kv_heads: int | None = None,
    seq_len_kv: int | None = None, backward: bool = False, window: int | None = None,
) -> float:
    """Predicted time in seconds of one fused attention call (forward, or its backward).

    ``backward=True`` prices the backward kernel alone (2.5× the forward's math);
    ``kv_heads`` < ``heads`` is grouped-query attention; ``window`` is a causal sliding
    window (Mistral): each query sees at most that many keys, and the kernel skips key
    blocks wholly outside it.

    >>> f = attention_time(batch=1, heads=32, seq_len=4096, head_dim=128, gpu="h100")
    >>> b = attention_time(batch=1, heads=32, seq_len=4096, head_dim=128, gpu="h100",
    ...                    backward=True)
    >>> 2 < b / f < 4
    True
    """
    return explain_attention(
        batch=batch, heads=heads, seq_len=seq_len, head_dim=head_dim, gpu=gpu, dtype=dtype,
        causal=causal, kv_heads=kv_heads, seq_len_kv=seq_len_kv, backward=backward,
        window=window,
    ).time_s
