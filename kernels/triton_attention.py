"""A FlashAttention-style forward in Triton, with explicit BLOCK_M and BLOCK_N.

This file holds the kernel, :func:`_attn_fwd_kernel`, and its launcher, :func:`attention`.
The problem, its inputs, the float64 check and the timing are those of every attention
backend (:mod:`shapewise.kernels.attention`, row ``triton``; explicit blocks through
:func:`shapewise.kernels.attention.check_triton_blocks`).

The algorithm of FlashAttention-2's forward: each program owns ``BLOCK_M`` query rows of one
(batch, head) and streams the keys and values in ``BLOCK_N`` blocks, keeping a running
row maximum ``m_i``, a running sum ``l_i`` and an unnormalised accumulator, so the
(seq_len × seq_len_kv) score matrix never reaches memory. Scores are scaled by
``log2(e)/sqrt(d)`` so the exponentials are ``exp2``. ``causal`` masks key j from query i
when j > i (top-left aligned, as SDPA's ``is_causal``) and stops the key loop at the
diagonal, so a causal forward does about half the work.

Shapes: q (batch, heads, seq_len, head_dim); k, v (batch, kv_heads, seq_len_kv, head_dim),
any strides; ``heads`` a multiple of ``kv_heads`` (GQA: query head h reads kv head
h // (heads / kv_heads)). The head dim is a constexpr; it is padded (masked) to the next
power of two, at least 16, so 80 or 96 work. Odd sequence lengths are masked.

Importing this module imports triton and defines the kernel: set ``TRITON_INTERPRET=1``
first to run it on the CPU (fp32 and fp16; the interpreter's bf16 ``tl.dot`` is wrong).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import triton
import triton.language as tl

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: (BLOCK_M, BLOCK_N) by head dim: FlashAttention-2's forward on sm80 uses 128×64 for
#: d ≤ 128 and 64×64 above (it must fit q, k, v blocks and the accumulator in shared
#: memory and registers).
DEFAULT_BLOCKS: dict[int, tuple[int, int]] = {64: (128, 64), 128: (128, 64), 256: (64, 64)}
LOG2E = 1.4426950408889634


@triton.jit
def _attn_fwd_kernel(
    Q, K, V, Out,
    qk_scale,
    stride_qb, stride_qh, stride_qs, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_ob, stride_oh, stride_os, stride_od,
    HEADS, KV_GROUP, SEQ_Q, SEQ_KV,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b = off_bh // HEADS
    off_h = off_bh % HEADS
    off_kvh = off_h // KV_GROUP

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,) query rows
    offs_n = tl.arange(0, BLOCK_N)  # (BN,) key columns within a block
    offs_d = tl.arange(0, BLOCK_D)  # (BD,) head dim, padded to a power of two
    mask_d = offs_d < HEAD_DIM
    mask_m = offs_m < SEQ_Q

    q_ptrs = (Q + off_b * stride_qb + off_h * stride_qh
              + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd)
    q = tl.load(q_ptrs, mask=mask_m[:, None] & mask_d[None, :], other=0.0)  # (BM, BD)
    k_base = K + off_b * stride_kb + off_kvh * stride_kh
    v_base = V + off_b * stride_vb + off_kvh * stride_vh

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)

    hi = SEQ_KV
    if CAUSAL:
        hi = tl.minimum(SEQ_KV, (start_m + 1) * BLOCK_M)  # no key past the last row
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n  # (BN,)
        mask_n = cols < SEQ_KV
        k = tl.load(k_base + cols[None, :] * stride_ks + offs_d[:, None] * stride_kd,
                    mask=mask_n[None, :] & mask_d[:, None], other=0.0)  # (BD, BN)
        s = tl.dot(q, k) * qk_scale  # (BM, BN), log2 units
        valid = mask_n[None, :]
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None])
        s = tl.where(valid, s, float("-inf"))
        # key 0 is valid for every row, so m_new is finite from the first block on
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0)  # (BN, BD)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new

    out = acc / l_i[:, None]
    o_ptrs = (Out + off_b * stride_ob + off_h * stride_oh
              + offs_m[:, None] * stride_os + offs_d[None, :] * stride_od)
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


def default_blocks(head_dim: int) -> tuple[int, int]:
    for d in sorted(DEFAULT_BLOCKS):
        if head_dim <= d:
            return DEFAULT_BLOCKS[d]
    return DEFAULT_BLOCKS[max(DEFAULT_BLOCKS)]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              block_m: int | None = None, block_n: int | None = None,
              num_warps: int | None = None, num_stages: int = 2,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """Launcher: softmax(q·kᵀ/√d [+ causal mask])·v, output like q."""
    import torch

    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError("attention: q, k, v must be (batch, heads, seq, head_dim)")
    b, h, s, d = q.shape
    kvh, skv = k.shape[1], k.shape[2]
    if k.shape != v.shape or k.shape[0] != b or k.shape[3] != d or h % kvh:
        raise ValueError(f"attention: incompatible q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    dm, dn = default_blocks(d)
    block_m = block_m or dm
    block_n = block_n or dn
    block_d = max(16, triton.next_power_of_2(d))
    if num_warps is None:
        num_warps = 4 if block_d <= 64 else 8
    if out is None:
        out = torch.empty_like(q)
    grid = (triton.cdiv(s, block_m), b * h)
    _attn_fwd_kernel[grid](
        q, k, v, out,
        LOG2E / math.sqrt(d),
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        h, h // kvh, s, skv,
        HEAD_DIM=d, BLOCK_D=block_d, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal,
        num_warps=num_warps, num_stages=num_stages,
    )
    return out
