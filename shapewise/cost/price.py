"""``price(op, gpu)``: the one function that turns any op of :mod:`shapewise.ops` into seconds.

Each kind goes to its own model: :func:`shapewise.cost.gemm.gemm_time`,
:func:`shapewise.cost.attention.attention_time`, :func:`shapewise.cost.elementwise.op_time`
and, for collectives, the alpha-beta ring of :mod:`shapewise.cost.comm`.
"""

from __future__ import annotations

from shapewise.cost.attention import attention_time
from shapewise.cost.comm import ALPHA_S, allreduce_time, link_bandwidth
from shapewise.cost.elementwise import op_time
from shapewise.cost.gemm import gemm_time
from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, get_gpu
from shapewise.ops import Attention, Collective, Gemm, MemoryBound, Op


def _collective_time(op: Collective, gpu: GPU) -> float:
    """Ring algorithms over the GPU's scale-up link: (n−1) steps per pass, α each."""
    n = op.group_size
    if n == 1 and op.kind != "send_recv":
        return 0.0
    if op.kind == "all_reduce":
        return allreduce_time(op.nbytes, gpu=gpu, tp=n)
    bw = link_bandwidth(gpu)
    if op.kind == "send_recv":
        return op.nbytes / bw + ALPHA_S
    # all-gather, reduce-scatter, all-to-all: each rank moves (n−1)/n of the buffer
    return (n - 1) / n * op.nbytes / bw + (n - 1) * ALPHA_S


def price(op: Op, gpu: str | GPU) -> float:
    """Seconds for one launch of ``op`` on ``gpu``.

    >>> from shapewise.ops import Gemm
    >>> price(Gemm(m=4096, n=4096, k=4096), "h100") == gemm_time(4096, 4096, 4096, gpu="h100")
    True
    """
    g = get_gpu(gpu)
    if isinstance(op, Gemm):
        return gemm_time(op.m, op.n, op.k, gpu=g, dtype=op.dtype, batch=op.batch)
    if isinstance(op, Attention):
        return attention_time(batch=op.batch, heads=op.heads, seq_len=op.seq_len,
                              head_dim=op.head_dim, gpu=g, dtype=op.dtype, causal=op.causal,
                              kv_heads=op.kv_heads, seq_len_kv=op.seq_len_kv,
                              backward=op.backward, window=op.window,
                              head_dim_v=op.head_dim_v, backend=op.backend)
    if isinstance(op, MemoryBound):
        return op_time(op.op, op.numel, gpu=g, bytes_per_element=op.bytes_per_element,
                       backward=op.backward)
    if isinstance(op, Collective):
        return _collective_time(op, g)
    raise InputError(f"op: expected a Gemm, Attention, MemoryBound or Collective, "
                     f"got {type(op).__name__}")
