"""Fused attention time per backend (FlashAttention 2/3/4, cuDNN, PyTorch SDPA, Triton, CK).

FLOP convention (stated once, used everywhere in shapewise):

* forward = 2 · batch · heads · pairs · (d_qk + d_v): QKᵀ (d_qk MACs per visible
  (query, key) pair) and P·V (d_v MACs), 2 FLOPs per MAC; with d_qk = d_v = d that is the
  familiar 4·b·h·pairs·d. ``pairs`` counts the visible (query, key) pairs: s_q·s_kv
  without a mask; a causal mask over s_q = s_kv keeps s²/2 (the diagonal's extra s/2
  ignored, as co-design.md §2 and MFU accounting do); queries that follow s_kv − s_q cached
  keys add s_q·(s_kv − s_q); a sliding window w keeps at most w keys per query;
* backward (model FLOPs) = 2 × forward (dQ, dK, dV, dP). The backward *kernel* also
  recomputes S = QKᵀ, so it executes 2·pairs·(3·d_qk + 2·d_v) FLOPs (2.5 × forward when
  d_qk = d_v); that is what its time prices.

The kernel model (one formula for every fused backend; docs/cost-model.md gives the reasons):

* **Forward.** Each CTA owns one (batch, head, block of ``BlockM`` queries) and walks the
  key blocks of ``BlockN`` keys it can see; a causal mask or a window skips whole blocks,
  and blocks that straddle the mask are computed in full. One block pair costs
  ``BlockM·BlockN·(2·(d_qk' + d_v')/r + κ/(16·f))``: the MMAs at ``r`` = the SM's share
  of peak × the backend's efficiency, and the softmax's exponentials on the special-function
  unit (16 per clock per SM, CUDA C++ Programming Guide throughput table; CDNA's
  transcendental rate is also a quarter of its 64 lanes), of which the fraction ``κ`` is not
  hidden behind the MMAs. ``d'`` are the head dims as the kernel runs them (rounded up to
  its compiled sizes and to the MMA K step).
* **Backward.** Its own tiles: each CTA owns a block of ``BlockN`` keys (dK, dV stay in
  registers) and walks the query blocks that see them, recomputing P from the saved
  log-sum-exp, and accumulating dQ in fp32 through global atomics: 4 bytes × d_qk per
  query per visited block, resolved in L2 while the accumulators of the heads the
  resident CTAs work on fit there (HBM then sees dQ once), else priced against the
  bandwidth (:func:`dq_accumulation_bytes`). Two extra small kernels (dO·O row sums, dQ
  conversion) add two launches.
* **fp8 backward.** It also quantises P and dS at every score element (scale, amax, e4m3
  conversion) on the CUDA cores while the asynchronous MMAs run: a block pair takes
  ``max(MMAs, κ₈/(16·f) per element)`` before the exposed exponentials. The work does not
  shrink with the head dim, so fp8's gain over bf16 does (cudnn_frontend_sdpa.csv, cuDNN
  9.22: 1.4-1.5× at d 128, 2.0× at 192/128 on GB300).
* **Schedule.** ``time = t_pair · max(work / slots, longest CTA)`` where ``work`` is the
  block pairs of all CTAs plus ``c₀`` block-pair equivalents per CTA (loading its Q or K/V
  block, writing its output: what makes short rows and narrow windows slow), and
  ``slots`` the CTAs resident at once. Memory traffic (Q, K, V, O once; GQA reads K/V per
  KV head) is a floor, and one launch per kernel is added.
* **No fused kernel** (``sdpa-math``, or a head dim no fused backend takes): two batched
  GEMMs and a softmax over the materialised s×s scores (:func:`_materialized`).

Parameters per (GPU, backend): ``fwd_efficiency`` and ``bwd_efficiency`` (the MMA rate as a
fraction of the dtype's dense peak), and where fp8 was measured ``fwd_efficiency_fp8`` /
``bwd_efficiency_fp8``, or ``bwd_quant_fp8`` (κ₈; the fp8 backward's MMAs then run at
``bwd_efficiency``); per backend across GPUs ``softmax_exposed`` (κ) and ``cta_overhead``
(c₀). They are fitted on public timings by ``scripts/fit_public.py`` and stored in the
profiles' ``calibration.attention_backends`` with their provenance; unfitted pairs use the
spec-derived priors of :mod:`shapewise.cost.defaults`.

Which backend runs by default is what PyTorch's ``scaled_dot_product_attention`` dispatch
picks (:func:`default_backend`, sources there).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal

from shapewise.cost.attention_backends import (  # noqa: F401  (re-exported)
    BACKEND_ALIASES,
    BACKENDS,
    AttentionBackend,
    attention_backend_params,
    available_backends,
    backend_names,
    check_backend,
    default_backend,
    dispatch_order,
    resolve_backend,
    sm_version,
    unsupported_reason,
)
from shapewise.cost.attention_decode import is_short_query, price_short_query
from shapewise.cost.defaults import calibration_of
from shapewise.cost.gemm import _resolve, check_dim, gemm_time
from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, GPU

#: backward kernel work relative to the forward when d_qk = d_v (5 matmuls against 2)
BACKWARD_KERNEL_RATIO = 2.5
#: backward model FLOPs relative to the forward (4 matmuls against 2)
BACKWARD_MODEL_RATIO = 2.0
FUSED_MAX_HEAD_DIM = 256
#: exponentials per clock per SM on the special-function unit (CUDA C++ Programming Guide,
#: "Arithmetic Instructions" throughput table: 16 for exp2/log2/rcp on cc 5.x to 10.x);
#: CDNA runs v_exp_f32 at a quarter of its 64 lanes, also 16 per CU per clock
EXP_PER_CLOCK_PER_SM = 16.0
#: kernel launches of a backward pass: dO·O row sums, the main kernel, the dQ conversion
#: (FlashAttention-2/3 ``flash_bwd_launch_template.h``; cuDNN's backward graph is similar)
BACKWARD_LAUNCHES = 3
#: head-dim elements per K step of QKᵀ in the fused kernels' main loop (one 128-byte
#: shared-memory row of bf16; FA2/FA3 kBlockKSmem = 64)
QK_STEP = 64

Direction = Literal["fwd", "bwd"]


# --------------------------------------------------------------------------- FLOPs


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
                    backward: bool = False, window: int | None = None,
                    head_dim_v: int | None = None) -> float:
    """Model FLOPs of attention forward (or backward, 2× forward); causal counts exactly."""
    skv = seq_len if seq_len_kv is None else seq_len_kv
    if window is not None:
        window = check_dim(window, "window")
    dv = head_dim if head_dim_v is None else head_dim_v
    fwd = 2.0 * batch * heads * (head_dim + dv) * visible_pairs(seq_len, skv, causal, window)
    return fwd * BACKWARD_MODEL_RATIO if backward else fwd


# --------------------------------------------------------------------------- tiles

#: FlashAttention-2 forward tiles (BlockM, BlockN) by head-dim bucket on sm80, and on
#: Hopper/Blackwell where it runs its sm80 code (Dao-AILab/flash-attention
#: csrc/flash_attn/src/flash_fwd_launch_template.h, via shared/reference/gpu_specs.md)
FA2_FWD_TILES = {64: (128, 128), 128: (128, 64), 256: (128, 64)}
#: backward (BlockM queries, BlockN keys per CTA): FA2 flash_bwd_launch_template.h (A100/H100)
FA2_BWD_TILES = {64: (128, 128), 128: (64, 128), 256: (64, 64)}
#: FA3 backward (hopper/flash_bwd_launch_template.h): 128×128, 64×128 (80×128 non-causal), 64×80
FA3_BWD_TILES = {64: (128, 128), 128: (64, 128), 256: (64, 80)}


def _lookup(table: dict[int, tuple[int, int]] | Any, d: int) -> tuple[int, int]:
    key = min((h for h in table if h >= d), default=max(table))
    return table[key]


def masked_block_skipping(backend: str, gpu: GPU, dtype: str, backward: bool
                          ) -> tuple[bool, bool]:
    """(skips blocks above the causal diagonal, skips blocks outside a sliding window).

    Every fused kernel skips both, except cuDNN's fp8 backward, whose public timings
    (cudnn_frontend_sdpa.csv, cuDNN 9.19-9.22) show it computing masked blocks: on sm90 a
    causal fp8 backward takes as long as the non-causal one (118.7 vs 130.5 ms at 32k,
    H200), and on sm100 a 128-key window costs as much as full causal attention (its time
    grows with s²: 1.7 ms at 4k, 90 ms at 32k on GB200).
    """
    if backend == "cudnn" and dtype == "fp8" and backward:
        return sm_version(gpu) >= 100, False
    return True, True


def kernel_tiles(backend: AttentionBackend, gpu: GPU, head_dim: int, backward: bool
                 ) -> tuple[int, int]:
    """(BlockM, BlockN) of ``backend``'s kernel at ``head_dim`` on ``gpu``."""
    native = backend.mma == "native" and gpu.vendor == "nvidia" and sm_version(gpu) >= 90
    if backward:
        return _lookup(FA3_BWD_TILES if native else FA2_BWD_TILES, head_dim)
    if backend.tiles == "fa2" and sm_version(gpu) >= 90:
        return _lookup(FA2_FWD_TILES, head_dim)
    return _lookup(gpu.attention_tiles, head_dim)


def _kernel_dim(backend: AttentionBackend, d: int) -> int:
    """The head dim the kernel is compiled for (the next compiled size up)."""
    if backend.head_dim_buckets:
        return min((h for h in backend.head_dim_buckets if h >= d),
                   default=max(backend.head_dim_buckets))
    return 16 * math.ceil(d / 16)  # the MMA K step of 16-bit tensor cores


@lru_cache(maxsize=1 << 14)
def block_schedule(seq_len: int, seq_len_kv: int, causal: bool, window: int | None,
                   bm: int, bn: int, backward: bool) -> tuple[int, int, int]:
    """(CTAs, visited block pairs, longest CTA's block pairs) for one (batch, head).

    Forward CTAs own query blocks, backward CTAs own key blocks. A block pair is visited
    when any of its (query, key) pairs is visible: causal queries are the last ``seq_len``
    of ``seq_len_kv`` positions, a window keeps the last ``window`` keys of each query.
    """
    q_blocks = -(-seq_len // bm)
    k_blocks = -(-seq_len_kv // bn)
    if not causal:
        return ((k_blocks, q_blocks * k_blocks, q_blocks) if backward
                else (q_blocks, q_blocks * k_blocks, k_blocks))
    offset = seq_len_kv - seq_len
    lo: list[int] = []
    hi: list[int] = []
    for i in range(q_blocks):
        first_q = i * bm + offset  # the block's first and last query positions (in keys)
        last_q = min((i + 1) * bm, seq_len) - 1 + offset
        h = min(k_blocks, last_q // bn + 1)  # key blocks up to the last query's diagonal
        lo_key = 0 if window is None else max(0, first_q - window + 1)
        lo.append(min(h, lo_key // bn))
        hi.append(h)
    visited = sum(h - low for low, h in zip(lo, hi, strict=True))
    if not backward:
        return q_blocks, visited, max(h - low for low, h in zip(lo, hi, strict=True))
    # per key block: how many query blocks visit it (a difference array over lo..hi)
    diff = [0] * (k_blocks + 1)
    for low, h in zip(lo, hi, strict=True):
        diff[low] += 1
        diff[h] -= 1
    run, longest, ctas = 0, 0, 0
    for j in range(k_blocks):
        run += diff[j]
        longest = max(longest, run)
        ctas += run > 0
    return max(ctas, 1), visited, longest


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class AttentionExplanation:
    time_s: float
    flops: float
    """model FLOPs of this pass (forward, or backward = 2 × forward)"""
    tflops: float
    path: Literal["fused", "materialized", "decode"]
    kernel_head_dim: int
    block: tuple[int, int]
    ctas: int
    waves: int
    compute_s: float
    memory_s: float
    launch_s: float
    calibration: str
    note: str
    backend: str = ""
    """the backend priced (``sdpa-math`` for the materialised path)"""
    backend_choice: str = ""
    """why this backend: 'explicit', or PyTorch's default dispatch"""
    efficiency: float = 0.0
    """the MMA rate priced, as a fraction of the dtype's dense peak"""
    params: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FusedParams:
    """The per-(GPU, backend) numbers the fused-kernel formula takes (see the module doc)."""

    efficiency: float
    """MMA rate as a fraction of the dtype's dense peak"""
    softmax_exposed: float
    """κ: share of the exponentials' special-function time not hidden behind the MMAs"""
    cta_overhead: float
    """c₀: fixed work per CTA, in block pairs"""
    launch_s: float
    stream_bw: float
    """bytes/s a streaming kernel sustains"""
    quant_elementwise: float = 0.0
    """κ₈: the fp8 backward's per-score-element quantisation work (scale, amax and e4m3
    conversion of P and dS), in special-function-unit clocks × 16 like κ; it runs on the
    CUDA cores beside the asynchronous MMAs, so a block pair takes the longer of the two"""


def fused_time(gpu: GPU, dtype: str, p: FusedParams, *, batch: int, heads: int,
               kv_heads: int, seq_len: int, seq_len_kv: int, head_dim_k: int,
               head_dim_vk: int, head_dim: int, head_dim_v: int, causal: bool,
               window: int | None, tiles: tuple[int, int], backward: bool,
               skip: tuple[bool, bool] = (True, True)
               ) -> tuple[float, float, float, int, int]:
    """(time, compute, memory, ctas, waves) of one fused call; the formula of the module doc.

    ``head_dim_k`` / ``head_dim_vk`` are the head dims as the kernel runs them (padded),
    ``head_dim`` / ``head_dim_v`` the tensors' own (for the bytes moved); ``skip`` says
    whether the kernel skips masked blocks (:func:`masked_block_skipping`).
    """
    bm, bn = tiles
    c_sched = causal and skip[0]
    w_sched = window if (c_sched and skip[1]) else None
    ctas1, visited1, longest = block_schedule(seq_len, seq_len_kv, c_sched, w_sched, bm, bn,
                                              backward)
    bh = batch * heads
    # QKᵀ reduces over the head dim in K steps of 64 elements (the kernels' smem K tile),
    # so 80 or 160 pay for 128 or 192; P·V has the head dim as its N, paid at the kernel's
    # compiled size
    dqk = QK_STEP * math.ceil(head_dim_k / QK_STEP) if head_dim_k >= QK_STEP else head_dim_k
    # forward: S = QKᵀ over d_qk, O = P·V over d_v; backward: S, dP, dV, dQ, dK, i.e. three
    # products over d_qk and two over d_v
    mma = 2.0 * (3 * dqk + 2 * head_dim_vk) if backward else 2.0 * (dqk + head_dim_vk)
    sm_rate = gpu.peak_flops(dtype) * p.efficiency / gpu.sm_count
    clock = gpu.boost_clock_mhz * 1e6
    per_exp = 1.0 / (EXP_PER_CLOCK_PER_SM * clock)
    # the MMAs, or the fp8 backward's quantisation of P and dS where that is longer (both
    # proceed at once: the MMAs are asynchronous), then the exposed exponentials
    t_pair = bm * bn * (max(mma / sm_rate, p.quant_elementwise * per_exp)
                        + p.softmax_exposed * per_exp)
    slots = gpu.sm_count * gpu.ctas_per_sm
    ctas = bh * ctas1
    work = bh * visited1 + p.cta_overhead * ctas
    compute = t_pair * max(work / slots, longest + p.cta_overhead)
    waves = -(-ctas // slots)
    nb = DTYPE_BYTES[dtype]
    # Q, O once; K, V once per KV head (GQA shares them across its query heads)
    q_o = bh * seq_len * (head_dim + head_dim_v) * nb
    k_v = batch * kv_heads * seq_len_kv * (head_dim + head_dim_v) * nb
    memory = (q_o + k_v) / p.stream_bw
    launches = 1
    if backward:
        # read Q, K, V, O, dO, write dQ, dK, dV; dQ accumulates in fp32 through atomics,
        # 4 bytes · d_qk per query row for every key block that row visits. Those land in
        # L2 when the accumulators the resident CTAs add into fit there (then HBM sees dQ
        # once, written back and read by the conversion kernel), else in HBM
        memory = 2 * memory + dq_accumulation_bytes(
            gpu, bh=bh, ctas_per_head=ctas1, visited=visited1, block_m=bm,
            seq_len=seq_len, head_dim=head_dim) / p.stream_bw
        launches = BACKWARD_LAUNCHES
    t = max(compute, memory) + launches * p.launch_s
    return t, compute, memory, ctas, waves


def dq_accumulation_bytes(gpu: GPU, *, bh: int, ctas_per_head: int, visited: int,
                          block_m: int, seq_len: int, head_dim: int) -> float:
    """HBM bytes of the backward's fp32 dQ accumulation.

    Each visited block pair adds a ``block_m × d_qk`` fp32 tile into dQ's accumulator. The
    grid walks the key blocks of one (batch, head) before the next, so the CTAs resident at
    once add into ``ceil(slots / CTAs per head)`` heads' accumulators, ``s · d_qk · 4``
    bytes each. When those fit in L2 the atomics resolve there and HBM sees the
    accumulator once (written back, read by the conversion kernel); otherwise every add
    goes to HBM.
    """
    slots = gpu.sm_count * gpu.ctas_per_sm
    live_heads = min(bh, -(-slots // max(ctas_per_head, 1)))
    per_head = seq_len * head_dim * 4
    if live_heads * per_head <= gpu.l2_mb * 1e6:
        return 2.0 * bh * per_head
    return bh * visited * block_m * head_dim * 4.0


def params_from(prm: dict[str, float], gpu: GPU, dtype: str, backward: bool) -> FusedParams:
    """:class:`FusedParams` from a backend's parameter dict (a profile's or a fit's)."""
    cal = calibration_of(gpu)
    key = ("bwd" if backward else "fwd") + "_efficiency"
    eff = prm.get(key + "_fp8", prm[key]) if dtype == "fp8" else prm[key]
    quant = prm.get("bwd_quant_fp8", 0.0) if (dtype == "fp8" and backward) else 0.0
    return FusedParams(
        efficiency=min(1.0, eff), softmax_exposed=prm["softmax_exposed"],
        cta_overhead=prm["cta_overhead"], launch_s=prm.get("launch_us", cal.launch_us) * 1e-6,
        stream_bw=gpu.bandwidth * cal.bandwidth_efficiency, quant_elementwise=quant,
    )


def fused_params(gpu: GPU, backend: str, dtype: str, backward: bool) -> tuple[FusedParams, str]:
    """The parameters :func:`fused_time` uses for ``backend`` on ``gpu``, and their origin."""
    prm, origin = attention_backend_params(gpu, backend, dtype)
    return params_from(prm, gpu, dtype, backward), origin


def _validate(batch: int, heads: int, seq_len: int, head_dim: int, kv_heads: int | None,
              seq_len_kv: int | None, window: int | None, head_dim_v: int | None
              ) -> tuple[int, int, int, int, int, int, int | None, int]:
    b = check_dim(batch, "batch")
    a = check_dim(heads, "heads")
    s = check_dim(seq_len, "seq_len")
    d = check_dim(head_dim, "head_dim")
    g = a if kv_heads is None else check_dim(kv_heads, "kv_heads")
    if a % g:
        raise InputError(f"kv_heads: {g} must divide heads ({a})")
    skv = s if seq_len_kv is None else check_dim(seq_len_kv, "seq_len_kv")
    w = None if window is None else check_dim(window, "window")  # causal: visible_pairs
    dv = d if head_dim_v is None else check_dim(head_dim_v, "head_dim_v")
    return b, a, s, d, g, skv, w, dv


def explain_attention(
    *, batch: int, heads: int, seq_len: int, head_dim: int, gpu: str | GPU,
    dtype: str = "bf16", causal: bool = True, kv_heads: int | None = None,
    seq_len_kv: int | None = None, backward: bool = False, window: int | None = None,
    head_dim_v: int | None = None, backend: str | None = None,
) -> AttentionExplanation:
    """The breakdown behind :func:`attention_time`."""
    b, a, s, d, g_heads, skv, w, dv = _validate(batch, heads, seq_len, head_dim, kv_heads,
                                                seq_len_kv, window, head_dim_v)
    gpu_, dt = _resolve(gpu, dtype)
    flops = attention_flops(batch=b, heads=a, seq_len=s, head_dim=d, causal=causal,
                            seq_len_kv=skv, backward=backward, window=w, head_dim_v=dv)
    if causal:
        visible_pairs(s, skv, causal, w)  # raises for seq_len_kv < seq_len
    shape = dict(dtype=dt, head_dim=d, head_dim_v=dv, causal=causal, seq_len=s,
                 seq_len_kv=skv)
    if backend is None:
        # one backend for both passes: the dispatch picks it at the forward, for inputs
        # that require grad, and its backward runs the same kernel family
        name = default_backend(gpu_, **shape, training=True)
        choice = "PyTorch SDPA default dispatch"
        if dt == "fp8" and name != "cudnn":
            dt = "bf16" if "bf16" in gpu_.peak_tflops else "fp16"
            choice += f" (no fp8 attention kernel on {gpu_.name}: priced in {dt})"
            shape["dtype"] = dt
            name = default_backend(gpu_, **shape, training=True)
    else:
        name = check_backend(backend, gpu_, backward=backward, **shape).name
        choice = "explicit"
    be = BACKENDS[name]
    if be.fused and is_short_query(seq_len=s, seq_len_kv=skv, heads=a, kv_heads=g_heads,
                                   backward=backward):  # decode: memory-bound split-KV
        return price_short_query(batch=b, heads=a, kv_heads=g_heads, seq_len=s,
                                 seq_len_kv=skv, head_dim=d, head_dim_v=dv, gpu=gpu_,
                                 dtype=dt, window=w, flops=flops, backend=name, choice=choice,
                                 report=AttentionExplanation)
    cal = calibration_of(gpu_)
    launch = cal.launch_us * 1e-6
    stream_bw = gpu_.bandwidth * cal.bandwidth_efficiency
    if not be.fused:
        reason = _fallback_reason(gpu_, dt, d, dv)
        return _materialized(b, a, s, d, dv, skv, causal, backward, gpu_, dt, flops, launch,
                             stream_bw, reason, choice)
    prm, origin = fused_params(gpu_, name, dt, backward)
    kd, kdv = _kernel_dim(be, d), _kernel_dim(be, dv)
    tiles = kernel_tiles(be, gpu_, max(kd, kdv), backward)
    t, compute, memory, ctas, waves = fused_time(
        gpu_, dt, prm, batch=b, heads=a, kv_heads=g_heads, seq_len=s, seq_len_kv=skv,
        head_dim_k=kd, head_dim_vk=kdv, head_dim=d, head_dim_v=dv, causal=causal, window=w,
        tiles=tiles, backward=backward,
        skip=masked_block_skipping(name, gpu_, dt, backward))
    notes = []
    if kd != d:
        notes.append(f"head dim {d} runs the {kd}-wide kernel ({kd / d - 1:.0%} wasted math)")
    if prm.quant_elementwise > 0:
        dqk = QK_STEP * math.ceil(kd / QK_STEP) if kd >= QK_STEP else kd
        mma_clocks = 2.0 * (3 * dqk + 2 * kdv) / (
            gpu_.peak_flops(dt) * prm.efficiency / gpu_.sm_count / (gpu_.boost_clock_mhz * 1e6))
        if prm.quant_elementwise / EXP_PER_CLOCK_PER_SM > mma_clocks:
            notes.append("fp8 backward bound by its quantisation of P and dS "
                         f"({prm.quant_elementwise / EXP_PER_CLOCK_PER_SM:.3f} clock per score "
                         f"element per SM, the MMAs {mma_clocks:.3f})")
    note = "; ".join(notes)
    return AttentionExplanation(
        time_s=t, flops=flops, tflops=flops / t / 1e12, path="fused", kernel_head_dim=kd,
        block=tiles, ctas=ctas, waves=waves, compute_s=compute, memory_s=memory,
        launch_s=(BACKWARD_LAUNCHES if backward else 1) * launch, calibration=origin,
        note=note, backend=name, backend_choice=choice, efficiency=prm.efficiency,
        params={"efficiency": prm.efficiency, "softmax_exposed": prm.softmax_exposed,
                "cta_overhead": prm.cta_overhead,
                **({"quant_elementwise": prm.quant_elementwise}
                   if prm.quant_elementwise else {})},
    )


def _fallback_reason(gpu: GPU, dt: str, d: int, dv: int) -> str:
    if d % 8 or dv % 8:
        return f"head dim {d if d % 8 else dv} is not a multiple of 8"
    if max(d, dv) > FUSED_MAX_HEAD_DIM:
        return f"head dim {max(d, dv)} is above {FUSED_MAX_HEAD_DIM}"
    return f"no fused {dt} kernel on {gpu.name} for this shape"


#: elementwise passes over the materialised scores in PyTorch's math path
#: (aten/src/ATen/native/transformers/attention.cpp _scaled_dot_product_attention_math):
#: softmax reads and writes them, ``_safe_softmax``'s guard against fully masked rows reads
#: them and the result and writes once more; a causal mask is added in place (read, write)
MATH_FWD_PASSES = 5
MATH_CAUSAL_PASSES = 2
#: backward: softmax backward reads P and dP and writes dS; the guard's backward reads the
#: gradient and writes it
MATH_BWD_PASSES = 5


def _materialized(b: int, a: int, s: int, d: int, dv: int, skv: int, causal: bool,
                  backward: bool, gpu: GPU, dt: str, flops: float, launch: float,
                  stream_bw: float, reason: str, choice: str) -> AttentionExplanation:
    """No fused kernel: PyTorch's math path, as ``_scaled_dot_product_attention_math`` runs.

    fp16/bf16 inputs are upcast to fp32 first (``allow_fp16_bf16_reduction_math_sdp`` is
    False by default), so S = QKᵀ and O = P·V are fp32 batched GEMMs (TF32 off, PyTorch's
    default matmul precision) over every head (GQA's K/V are repeated to all query heads),
    and the s×s fp32 scores take the elementwise passes above. The causal mask is applied
    after the full product: no work is skipped.
    """
    mdt = "fp32" if dt in ("fp16", "bf16", "fp8") and "fp32" in gpu.peak_tflops else dt
    qk = gemm_time(s, skv, d, gpu=gpu, dtype=mdt, batch=b * a)
    pv = gemm_time(s, dv, skv, gpu=gpu, dtype=mdt, batch=b * a)
    score_bytes = b * a * s * skv * DTYPE_BYTES[mdt]
    passes = MATH_FWD_PASSES + (MATH_CAUSAL_PASSES if causal else 0)
    elementwise = passes * score_bytes / stream_bw
    t = qk + pv + elementwise + passes * launch
    if backward:  # dV = Pᵀ·dO, dP = dO·Vᵀ, dS (softmax backward), dQ = dS·K, dK = dSᵀ·Q
        dvt = gemm_time(skv, dv, s, gpu=gpu, dtype=mdt, batch=b * a)
        dp = gemm_time(s, skv, dv, gpu=gpu, dtype=mdt, batch=b * a)
        dq = gemm_time(s, d, skv, gpu=gpu, dtype=mdt, batch=b * a)
        dk = gemm_time(skv, d, s, gpu=gpu, dtype=mdt, batch=b * a)
        # autograd runs one backward kernel per forward elementwise op. Its four products
        # carry twice the FLOPs and launches of the forward's two: at degenerate sizes
        # (s = 1) the GEMM model's tile rounding can price them below that, no kernel does
        elementwise = max(MATH_BWD_PASSES * score_bytes / stream_bw, elementwise)
        t = max(dvt + dp + dq + dk, 2 * (qk + pv)) + elementwise + passes * launch
    return AttentionExplanation(
        time_s=t, flops=flops, tflops=flops / t / 1e12, path="materialized",
        kernel_head_dim=d, block=(0, 0), ctas=0, waves=0, compute_s=t - elementwise,
        memory_s=elementwise, launch_s=launch,
        calibration=f"GEMM model ({mdt} materialised path)",
        note=f"{reason}: no fused kernel, the s×s scores are materialised in {mdt}"
        + (" (causal mask applied after the full product)" if causal else ""),
        backend="sdpa-math", backend_choice=choice,
    )


def attention_time(
    *, batch: int, heads: int, seq_len: int, head_dim: int, gpu: str | GPU,
    dtype: str = "bf16", causal: bool = True, kv_heads: int | None = None,
    seq_len_kv: int | None = None, backward: bool = False, window: int | None = None,
    head_dim_v: int | None = None, backend: str | None = None,
) -> float:
    """Predicted time in seconds of one attention call (forward, or its backward).

    ``backend`` is one of :data:`BACKENDS` (fa2, fa3, fa4, cudnn, sdpa-flash,
    sdpa-efficient, sdpa-math, triton, ck, aotriton); None prices what PyTorch's SDPA
    dispatch picks for this GPU, dtype and head dim (:func:`default_backend`). A backend
    that cannot run the shape on the GPU is an InputError naming it. ``backward=True``
    prices the backward kernel alone; ``kv_heads`` < ``heads`` is grouped-query attention;
    ``head_dim_v`` is V's head dim when it differs (MLA: 192/128); ``window`` is a causal
    sliding window (each query sees at most that many keys; whole key blocks outside it
    are skipped).

    >>> f = attention_time(batch=1, heads=32, seq_len=4096, head_dim=128, gpu="h100")
    >>> b = attention_time(batch=1, heads=32, seq_len=4096, head_dim=128, gpu="h100",
    ...                    backward=True)
    >>> 2 < b / f < 4
    True
    """
    return explain_attention(
        batch=batch, heads=heads, seq_len=seq_len, head_dim=head_dim, gpu=gpu, dtype=dtype,
        causal=causal, kv_heads=kv_heads, seq_len_kv=seq_len_kv, backward=backward,
        window=window, head_dim_v=head_dim_v, backend=backend,
    ).time_s
