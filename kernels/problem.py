"""The problems the kernels run, as the shared op vocabulary of :mod:`shapewise.ops`.

A GEMM problem is a :class:`shapewise.ops.Gemm` and an attention problem a
:class:`shapewise.ops.Attention`: the kernels, the bench plans and the cost model speak the
same types. What this module adds is what a *measurement* counts beside its time, the work
of one call:

- FLOPs: a GEMM does 2·m·n·k (one multiply and one add per term) per batch entry; an
  attention forward does QKᵀ and PV, 2·d FLOPs each per (query, key) pair, 4·b·h·d·pairs,
  and its backward 2.5 times that (five products: the recomputed QKᵀ, dV, dP, dQ, dK), the
  convention of FlashAttention's benchmarks, by which published TFLOP/s are compared.
- Bytes: the fewest bytes one call must move, each input read once and each output written
  once (a GEMM: m·k + k·n + m·n elements; an attention forward: q, k, v read, o written;
  its backward: q, k, v, o, dO read, dQ, dK, dV written).

:class:`AttentionProblem` is an ``ops.Attention`` with the kernels' conventions: K/V heads
and key length always given, non-causal unless asked. Every function here accepts any
``ops.Attention``; the kernels run one with neither a sliding window nor a V head dim of
its own (:func:`unsupported_attention` says why not).

Pure Python: importing this never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES
from shapewise.ops import Attention, Gemm

__all__ = ["AttentionProblem", "Gemm", "attention_bytes", "attention_flops", "gemm_bytes",
           "gemm_flops", "kv_len", "score_pairs", "unsupported_attention"]


def score_pairs(seq_len: int, seq_len_kv: int, causal: bool) -> int:
    """(query, key) pairs an attention call computes, per batch and head.

    Causal masks are top-left aligned, as ``scaled_dot_product_attention(is_causal=True)``
    builds them: query i sees keys 0..min(i, s_kv - 1).
    """
    if not causal:
        return seq_len * seq_len_kv
    tri = min(seq_len, seq_len_kv)
    full = max(0, seq_len - seq_len_kv)  # queries past the last key see all keys
    return tri * (tri + 1) // 2 + full * seq_len_kv


# ------------------------------------------------------------------------------- GEMM
def gemm_flops(op: Gemm) -> int:
    """2·m·n·k per product, times the batch (``op.flops`` as an exact integer)."""
    return 2 * op.m * op.n * op.k * op.batch


def gemm_bytes(op: Gemm, dtype: str | None = None) -> int:
    """Each operand read once, the output written once: (m·k + k·n + m·n)·itemsize·batch.

    ``dtype`` defaults to the op's own.
    """
    elements = op.m * op.k + op.k * op.n + op.m * op.n
    return elements * DTYPE_BYTES[dtype or op.dtype] * op.batch


# -------------------------------------------------------------------------- attention
def kv_len(op: Attention) -> int:
    """Key positions (``seq_len_kv``, or ``seq_len`` when not given)."""
    return op.seq_len if op.seq_len_kv is None else op.seq_len_kv


def attention_flops(op: Attention) -> int:
    """4·b·h·d per computed (query, key) pair forward; backward 2.5× (see the module doc)."""
    fwd = 4 * op.batch * op.heads * op.head_dim * score_pairs(op.seq_len, kv_len(op),
                                                               op.causal)
    return fwd * 5 // 2 if op.backward else fwd


def attention_bytes(op: Attention, dtype: str | None = None) -> int:
    """Forward: read q, k, v, write o. Backward: read q, k, v, o, dO, write dQ, dK, dV."""
    q = op.batch * op.heads * op.seq_len * op.head_dim
    kv = op.batch * op.groups * kv_len(op) * op.head_dim
    n = (4 * q + 4 * kv) if op.backward else (2 * q + 2 * kv)
    return n * DTYPE_BYTES[dtype or op.dtype]


def unsupported_attention(op: Attention) -> str:
    """Why the kernels cannot run ``op`` ("" when they can)."""
    if op.window is not None:
        return "a sliding window is not built (SDPA has no native window)"
    if op.head_dim_v is not None and op.head_dim_v != op.head_dim:
        return "a V head dim other than the Q/K head dim is not built"
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionProblem(Attention):
    """An ``ops.Attention`` as the kernels write it: every size given, non-causal by default.

    q is (batch, heads, seq_len, head_dim); k and v are (batch, kv_heads, seq_len_kv,
    head_dim), ``heads`` a multiple of ``kv_heads`` (grouped-query attention when they
    differ).
    """

    kv_heads: int
    """K/V heads (equal to ``heads`` unless grouped)"""
    seq_len_kv: int
    """key positions"""
    causal: bool = False

    def __post_init__(self) -> None:
        heads, kv = self.heads, self.kv_heads
        # the kernels' own wording first; the shared checks of ops.Attention then run
        if (isinstance(heads, int) and isinstance(kv, int) and kv > 0 and heads > 0
                and heads % kv):
            raise InputError(f"kv_heads: heads ({heads}) must be a multiple of kv_heads ({kv})")
        Attention.__post_init__(self)

    @property
    def score_pairs(self) -> int:
        """(query, key) pairs that are computed, per batch and head."""
        return score_pairs(self.seq_len, self.seq_len_kv, self.causal)

    def flops(self) -> int:
        """See :func:`attention_flops`."""
        return attention_flops(self)

    def bytes_moved(self, dtype: str) -> int:
        """See :func:`attention_bytes`."""
        return attention_bytes(self, dtype)
