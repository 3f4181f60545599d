"""Decode and short-query attention: a memory-bound split-KV kernel, not a FlashAttention tile.

A query of one token (decode) or a few (speculative decoding, chunked verification) against a
long KV cache does almost no math per byte: every K and V element read from HBM meets
``q_len · heads/kv_heads`` query rows, so at 16 bits the kernel does about that many FLOPs per
byte (8 for Llama-2-70B's 8:1 grouped heads), far below the ridge point of any GPU (A100 fp16
153, H100 bf16 295 FLOP/byte). Its time is the KV cache streamed from HBM, plus fixed costs,
not the tensor-core rate :mod:`shapewise.cost.attention` prices prefill and training with.

The kernel modelled is FlashAttention-2's split-KV ("flash-decoding") forward, what
``flash_attn_with_kvcache`` and vLLM/Sarathi's FLASH_ATTENTION backend run (Dao-AILab/
flash-attention ``csrc/flash_attn/flash_api.cpp`` and ``src/flash_fwd_launch_template.h``):

* **Packing.** The ``heads/kv_heads`` query heads that share a KV head are packed into the
  rows of one CTA (FA2's ``seqlenq_ngroups_swapped`` at q_len 1; FA3's ``pack_gqa``), so
  a CTA owns ``BLOCK_M = 64`` packed rows of one (batch, KV head) and K and V are read once
  per KV head. ``m_blocks = ceil(q_len · group / 64)``.
* **Split-KV.** When ``batch · kv_heads · m_blocks`` CTAs would under-fill the GPU, the keys
  are cut into ``splits`` contiguous ranges, one CTA each, and a second small kernel combines
  the partial results. The split count is flash-attn's ``num_splits_heuristic`` (below):
  the fewest splits whose wave efficiency is within 85% of the best, over the key blocks
  of ``BLOCK_N`` keys (256 for head dim ≤ 64, 128 up to 128, 64 above). With a paged cache
  the heuristic sees the block table's width (``max_num_blocks_per_seq · page_size``), not
  the sequence's length: ``kv_capacity``.
* **Time.** ``fixed + Σ_waves (cta + max(busiest SM's tiles · tile bytes / SM stream rate,
  wave bytes / (η · HBM bandwidth), busiest SM's tile FLOPs / SM MMA rate)) + combine``
  (``combine`` only when split). A CTA walks its key blocks one tile at a time and pays for
  whole tiles (the last is read whole: the staircase in the keys). ``η`` is the achieved
  share of the datasheet HBM bandwidth when the chip is full; the SM stream rate is the most
  one SM pulls (its outstanding loads, Little's law), a multiple of its even share of the
  bandwidth: few CTAs cannot fill HBM, which is why a batch of 1 is latency-bound. Each SM
  holds as many CTAs as its shared memory allows (the Q tile and one K and one V tile).

Parameters (:class:`DecodeParams`): ``fixed_us``, ``hbm_fraction``, ``sm_stream_share``,
``cta_us``, ``combine_us``. They are fitted by ``scripts/fit_decode.py`` on the decode rows
of vidur_a100_attention.csv (A100) and stored in that profile's
``calibration.attention_decode``; other GPUs take the A100 fit's values of
:data:`DECODE_PRIOR`, with ``hbm_fraction`` from their own fitted streaming bandwidth
(``calibration.bandwidth_efficiency``) where no decode timing exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shapewise.cost.defaults import calibration_of
from shapewise.cost.gemm import _resolve, check_dim
from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, GPU

#: query rows per CTA of FA2's split-KV kernel (flash_fwd_launch_template.h,
#: run_mha_fwd_splitkv_dispatch: "kBlockM = 64; Fixed for all head dimensions")
BLOCK_M = 64
#: the most splits flash_api.cpp asks the heuristic for
MAX_SPLITS = 128
#: the heuristic's two thresholds (flash_api.cpp num_splits_heuristic): no split once the
#: CTAs fill 80% of the SMs; take the fewest splits within 85% of the best wave efficiency
FILL_THRESHOLD = 0.8
EFFICIENCY_SHARE = 0.85

#: The A100 fit (``python scripts/fit_decode.py``), the only public decode timings the
#: project has; GPUs without a fit of their own use these, each a physical quantity:
DECODE_PRIOR: dict[str, float] = {
    # fixed time per call as a kernel timer sums it (the op's small kernels and launch)
    "fixed_us": 1.90,
    # share of the datasheet HBM bandwidth streamed when every SM is busy
    "hbm_fraction": 0.792,
    # the most one SM streams, as a multiple of its even share of the datasheet bandwidth
    "sm_stream_share": 1.17,
    # per wave of CTAs: load Q and the block table, write the partial O and log-sum-exp
    "cta_us": 4.81,
    # the combine kernel of a split-KV call
    "combine_us": 4.06,
}
DECODE_KEYS = tuple(DECODE_PRIOR)


@dataclass(frozen=True, slots=True)
class DecodeParams:
    """The physical parameters of the decode model (see the module doc)."""

    fixed_us: float
    """fixed time per call, microseconds"""
    hbm_fraction: float
    """share of the datasheet HBM bandwidth sustained when the chip is full"""
    sm_stream_share: float
    """most one SM streams, as a multiple of bandwidth / SM count"""
    cta_us: float
    """per wave: a CTA's prologue and epilogue, microseconds"""
    combine_us: float
    """the split-KV combine kernel, microseconds (0 without a split)"""


def decode_params(gpu: GPU) -> tuple[DecodeParams, str]:
    """The decode parameters for ``gpu`` and where they come from."""
    cal = calibration_of(gpu)
    own = dict(cal.attention_decode)
    for key, value in own.items():
        if key not in DECODE_PRIOR:
            raise InputError(f"calibration.attention_decode.{key}: not a decode parameter "
                             f"({', '.join(DECODE_KEYS)})")
        if key in ("hbm_fraction", "sm_stream_share") and not value > 0:
            raise InputError(f"calibration.attention_decode.{key}: must be positive")
    if own:
        prm = {**DECODE_PRIOR, **own}
        origin = f"fitted on {gpu.id} (calibration.provenance.attention_decode)"
    else:
        prm = dict(DECODE_PRIOR)
        if cal.status == "fitted":  # its own fitted streaming bandwidth
            prm["hbm_fraction"] = cal.bandwidth_efficiency
        origin = ("prior: the A100 decode fit (attention_decode.DECODE_PRIOR)"
                  + (", HBM share from this GPU's fit" if cal.status == "fitted" else ""))
    return DecodeParams(**{k: float(prm[k]) for k in DECODE_KEYS}), origin


def block_n(head_dim: int) -> int:
    """Keys per tile of FA2's split-KV kernel (run_mha_fwd_splitkv_dispatch)."""
    return 256 if head_dim <= 64 else 128 if head_dim <= 128 else 64


def num_splits(ctas: int, sm_count: int, n_blocks: int, max_splits: int = MAX_SPLITS) -> int:
    """flash-attn's ``num_splits_heuristic`` (csrc/flash_attn/flash_api.cpp).

    ``ctas`` = batch · heads · m_blocks without a split. A split count is eligible when it
    changes the blocks per split (11 and 12 splits of 64 blocks both give 6 per split). The
    A100 timings match this with ``sm_count`` SMs (the release vidur ran); later releases
    pass twice the SM count (two 128-thread CTAs per SM).
    """
    if ctas >= FILL_THRESHOLD * sm_count:
        return 1
    top = min(max_splits, sm_count, n_blocks)
    effs: list[float] = []
    for s in range(1, top + 1):
        if s > 1 and -(-n_blocks // s) == -(-n_blocks // (s - 1)):
            effs.append(0.0)
            continue
        waves = ctas * s / sm_count
        effs.append(waves / math.ceil(waves))
    best = max(effs, default=0.0)
    for s, e in enumerate(effs, start=1):
        if e > 0 and e >= EFFICIENCY_SHARE * best:
            return s
    return 1


@dataclass(frozen=True, slots=True)
class DecodeShape:
    """What the kernel does for one call, independent of the fitted parameters."""

    splits: int
    ctas: int
    """CTAs that do work (splits past the cache's end exit at once)"""
    tiles: int
    """key tiles the longest CTA walks"""
    slots: int
    """CTAs resident at once (SMs × CTAs per SM)"""
    sm_count: int
    tile_bytes: float
    """K and V bytes of one tile"""
    tile_flops: float
    """MMA FLOPs of one tile (64 packed rows, padded head dims)"""
    kv_bytes: float
    """K and V bytes read (the whole cache, once per KV head and row block)"""
    qo_bytes: float
    """Q and O, and the split partials (fp32 O and log-sum-exp, written and read back)"""
    flops: float
    """model FLOPs: 2 · batch · heads · q_len · keys · (d_qk + d_v)"""


def decode_shape(gpu: GPU, *, batch: int, heads: int, kv_heads: int, seq_len: int,
                 keys: int, head_dim: int, head_dim_v: int, dtype: str,
                 kv_capacity: int | None = None) -> DecodeShape:
    """The split, CTAs, tiles and bytes of one decode call (see the module doc)."""
    nb = DTYPE_BYTES[dtype]
    bn = block_n(max(head_dim, head_dim_v))
    group = heads // kv_heads
    m_blocks = -(-seq_len * group // BLOCK_M)
    base = batch * kv_heads * m_blocks
    n_blocks = -(-keys // bn)
    cap = -(-max(kv_capacity or keys, keys) // bn)
    splits = num_splits(base, gpu.sm_count, cap)
    per_split = -(-cap // splits)
    active = -(-n_blocks // per_split)
    # the padded head dims the kernel is compiled for (multiples of 32 up to 256)
    dk, dv = 32 * math.ceil(head_dim / 32), 32 * math.ceil(head_dim_v / 32)
    smem = (BLOCK_M * dk + bn * (dk + dv)) * max(nb, 2)
    per_sm = max(1, int(gpu.smem_per_sm_kb * 1024 // smem))
    partial = (batch * heads * seq_len * (head_dim_v + 1) * 4 * 2 * splits
               if splits > 1 else 0.0)
    return DecodeShape(
        splits=splits, ctas=base * active, tiles=min(n_blocks, per_split),
        slots=gpu.sm_count * per_sm, sm_count=gpu.sm_count,
        tile_bytes=float(bn * (head_dim + head_dim_v) * nb),
        tile_flops=2.0 * BLOCK_M * bn * (dk + dv),
        kv_bytes=float(base * keys * (head_dim + head_dim_v) * nb),
        qo_bytes=float(batch * heads * seq_len * (head_dim + head_dim_v) * nb + partial),
        flops=2.0 * batch * heads * seq_len * keys * (head_dim + head_dim_v),
    )


def kernel_time(sh: DecodeShape, p: DecodeParams, *, bandwidth: float, sm_rate: float
                ) -> tuple[float, float, float, int]:
    """(time, memory-limited part, compute-limited part, waves) in seconds.

    ``bandwidth`` is the datasheet HBM bandwidth (bytes/s), ``sm_rate`` one SM's MMA rate
    (FLOP/s). Full waves hold ``slots`` CTAs; the busiest SM of a wave of n holds
    ceil(n / SMs) of them.
    """
    sm_bw = p.sm_stream_share * bandwidth / sh.sm_count
    chip_bw = p.hbm_fraction * bandwidth
    full, last = divmod(sh.ctas, sh.slots)
    total = mem = comp = 0.0
    for n, count in ((sh.slots, full), (last, 1 if last else 0)):
        if not count:
            continue
        k = -(-n // sh.sm_count)
        t_sm = k * sh.tiles * sh.tile_bytes / sm_bw
        t_chip = sh.kv_bytes * n / sh.ctas / chip_bw
        t_mma = k * sh.tiles * sh.tile_flops / sm_rate
        wave = max(t_sm, t_chip, t_mma)
        total += count * (p.cta_us * 1e-6 + wave)
        if t_mma >= max(t_sm, t_chip):
            comp += count * wave
        else:
            mem += count * wave
    extra = sh.qo_bytes / chip_bw
    total += extra + p.fixed_us * 1e-6 + (p.combine_us * 1e-6 if sh.splits > 1 else 0.0)
    return total, mem + extra, comp, -(-sh.ctas // sh.slots)


@dataclass(frozen=True, slots=True)
class DecodeExplanation:
    """The breakdown of a decode / short-query attention price."""

    time_s: float
    flops: float
    """model FLOPs (forward: 2 · batch · heads · q_len · keys · (d_qk + d_v))"""
    kv_bytes: float
    """K and V cache bytes read"""
    memory_s: float
    """waves limited by streaming (SM or HBM), plus Q, O and split partials"""
    compute_s: float
    """waves limited by the MMAs"""
    fixed_s: float
    """fixed per call, per-wave CTA costs and the split combine"""
    achieved_bw: float
    """cache bytes / time, bytes/s"""
    splits: int
    ctas: int
    waves: int
    tiles: int
    calibration: str
    params: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def explain_decode(*, batch: int, heads: int, kv_heads: int, seq_len: int, keys: int,
                   head_dim: int, head_dim_v: int, gpu: str | GPU, dtype: str = "bf16",
                   kv_capacity: int | None = None) -> DecodeExplanation:
    """Price one decode / short-query forward: ``seq_len`` queries against ``keys`` cached keys.

    ``kv_capacity`` is the block-table width in tokens the split heuristic sees (a paged
    cache sized for a longer sequence); None: the cache itself. ``gpu`` may be a name.
    :func:`shapewise.cost.attention.explain_attention` routes short queries here.
    """
    batch, heads, kv_heads = (check_dim(batch, "batch"), check_dim(heads, "heads"),
                              check_dim(kv_heads, "kv_heads"))
    seq_len, keys = check_dim(seq_len, "seq_len"), check_dim(keys, "keys")
    head_dim, head_dim_v = check_dim(head_dim, "head_dim"), check_dim(head_dim_v, "head_dim_v")
    if heads % kv_heads:
        raise InputError(f"kv_heads: {kv_heads} must divide heads ({heads})")
    if kv_capacity is not None:
        kv_capacity = check_dim(kv_capacity, "kv_capacity")
    gpu, dtype = _resolve(gpu, dtype)
    p, origin = decode_params(gpu)
    sh = decode_shape(gpu, batch=batch, heads=heads, kv_heads=kv_heads, seq_len=seq_len,
                      keys=keys, head_dim=head_dim, head_dim_v=head_dim_v, dtype=dtype,
                      kv_capacity=kv_capacity)
    cal = calibration_of(gpu)
    mma_dtype = dtype if dtype in gpu.peak_tflops else "fp16"
    sm_rate = gpu.peak_flops(mma_dtype) * cal.efficiency(mma_dtype) / gpu.sm_count
    t, mem, comp, waves = kernel_time(sh, p, bandwidth=gpu.bandwidth, sm_rate=sm_rate)
    return DecodeExplanation(
        time_s=t, flops=sh.flops, kv_bytes=sh.kv_bytes, memory_s=mem, compute_s=comp,
        fixed_s=t - mem - comp, achieved_bw=sh.kv_bytes / t, splits=sh.splits,
        ctas=sh.ctas, waves=waves, tiles=sh.tiles, calibration=origin,
        params={k: getattr(p, k) for k in DECODE_KEYS},
    )


#: The decode path prices a forward whose queries per KV head, q_len · heads/kv_heads, fit
#: one 64-row tile of the split-KV kernel (BLOCK_M) and attend to a longer cache: each K/V
#: byte then meets at most 64 query rows, at most 64 FLOP/byte at 16 bits, below every
#: catalog GPU's 16-bit ridge point (the lowest: MI100 75, RTX 3090 76; A100 153, H100
#: 295), so the kernel is memory-bound (the model keeps its compute term all the same). Longer
#: queries (prefill chunks), self-attention without a cache (q_len = kv_len > 1) and every
#: backward stay with the tiled FlashAttention model of :mod:`shapewise.cost.attention`.
DECODE_MAX_ROWS = BLOCK_M


def is_short_query(*, seq_len: int, seq_len_kv: int, heads: int, kv_heads: int,
                   backward: bool) -> bool:
    """Whether :func:`shapewise.cost.attention.explain_attention` routes here."""
    return (not backward and (seq_len == 1 or seq_len_kv > seq_len)
            and seq_len * (heads // kv_heads) <= DECODE_MAX_ROWS)


def price_short_query(*, batch: int, heads: int, kv_heads: int, seq_len: int,
                      seq_len_kv: int, head_dim: int, head_dim_v: int, gpu: GPU, dtype: str,
                      window: int | None, flops: float, backend: str, choice: str,
                      report: Callable[..., Any]) -> Any:
    """:func:`explain_decode` as :func:`shapewise.cost.attention.explain_attention` reports it.

    ``report`` is its ``AttentionExplanation`` (passed in: that module imports this one). A
    sliding window reads only the last ``window`` keys. ``flops`` are the model FLOPs of the
    attention module's convention (causal pairs counted exactly).
    """
    keys = seq_len_kv if window is None else min(seq_len_kv, window + seq_len - 1)
    e = explain_decode(batch=batch, heads=heads, kv_heads=kv_heads, seq_len=seq_len,
                       keys=keys, head_dim=head_dim, head_dim_v=head_dim_v, gpu=gpu,
                       dtype=dtype)
    return report(
        time_s=e.time_s, flops=flops, tflops=flops / e.time_s / 1e12, path="decode",
        kernel_head_dim=head_dim, block=(BLOCK_M, block_n(max(head_dim, head_dim_v))),
        ctas=e.ctas, waves=e.waves, compute_s=e.compute_s, memory_s=e.memory_s,
        launch_s=e.fixed_s, calibration=e.calibration,
        note=(f"short query ({seq_len} x {heads // kv_heads} rows per KV head) against "
              f"{keys} cached keys: split-KV decode kernel, {e.splits} split(s), "
              f"{e.kv_bytes / 1e6:,.1f} MB of K/V at {e.achieved_bw / 1e12:.2f} TB/s"),
        backend=backend, backend_choice=choice, params=e.params,
    )
