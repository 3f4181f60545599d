"""``price(op, system_or_gpu)``: the one function that turns any op of :mod:`shapewise.ops`
into seconds.

Each kind goes to its own model: :func:`shapewise.cost.gemm.gemm_time`,
:func:`shapewise.cost.attention.attention_time`, :func:`shapewise.cost.elementwise.op_time`
and, for collectives, :func:`shapewise.cost.comm.collective_time` on the system.

The second argument is a :class:`~shapewise.hardware.system.System`, a system name, or a
GPU (name or :class:`~shapewise.hardware.catalog.GPU`). Kernels run on the system's GPU; a
GPU means its usual node for collectives (``h100`` → ``hgx-h100``), and a GPU that has no
shipped system prices them on its own link, within one node.
"""

from __future__ import annotations

from shapewise.cost.attention import attention_time
from shapewise.cost.comm import collective_time, system_for
from shapewise.cost.elementwise import op_time
from shapewise.cost.gemm import gemm_time
from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, get_gpu
from shapewise.hardware.system import System
from shapewise.ops import Attention, Collective, Gemm, MemoryBound, Op


def price(op: Op, gpu: str | GPU | System) -> float:
    """Seconds for one launch of ``op`` on ``gpu`` (a GPU, or a system and its GPU).

    >>> from shapewise.ops import Gemm
    >>> price(Gemm(m=4096, n=4096, k=4096), "h100") == gemm_time(4096, 4096, 4096, gpu="h100")
    True
    """
    g = get_gpu(gpu)  # also validates: 'mi250x' is refused here as for every GPU argument
    if isinstance(op, Collective):
        return collective_time(op.kind, op.nbytes, system=system_for(gpu),
                               group_size=op.group_size, ranks_per_node=op.ranks_per_node)
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
    raise InputError(f"op: expected a Gemm, Attention, MemoryBound or Collective, "
                     f"got {type(op).__name__}")
