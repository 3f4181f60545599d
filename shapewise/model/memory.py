"""Training memory per GPU: weights, gradients, optimizer state, activations.

Activations follow V. Korthikanti, J. Casper, S. Lym, L. McAfee, M. Andersch, M. Shoeybi,
B. Catanzaro, "Reducing Activation Recomputation in Large Transformer Models" (MLSys 2023,
arXiv:2205.05198), Section 4. Their GPT layer stores, per layer, in bytes (2-byte
activations, 1-byte dropout masks; s tokens, b sequences, h hidden, a heads):

    attention   QKV input 2sbh, Q and K 4sbh, V 2sbh, softmax 2as²b, its dropout mask as²b
                and output 2as²b, output-projection input 2sbh, dropout mask sbh
                = 11sbh + 5as²b
    MLP         first GEMM input 2sbh, GELU input 8sbh and output 8sbh, dropout mask sbh
                = 19sbh
    norms       two LayerNorm inputs, 4sbh
    total       sbh·(34 + 5as/h)

We assume FlashAttention, which never stores the s×s softmax, its mask or its dropout output,
so the 5as/h term goes away: **34·s·b·h bytes per layer**. (FlashAttention keeps a
log-sum-exp per query and head, 4·a·s·b bytes, under 0.1% of that, not counted.) With tensor
parallelism of size t and sequence parallelism off, Megatron splits what lies between its
column- and row-parallel GEMMs (Q, K, V, the attention output and the MLP interior: 24sbh)
and replicates the rest (norm inputs, QKV and MLP-GEMM inputs, dropout masks: 10sbh):
sbh·(10 + 24/t), the paper's equation (2).

The terms above are written out for this shape rather than hard-coded, so they stay exact
for the paper's layer (MHA, GELU, f = 4h: 34) and follow other shapes: GQA stores K and V of
g·d columns, SwiGLU stores its gate and up outputs and their product (3 of s·b·f instead of
GELU's 2), and ``dropout=False`` (Llama-style training) drops the masks.

Full recompute keeps only each layer's input (2sbh, replicated without sequence
parallelism) plus, while a layer's backward runs, that one layer's recomputed activations.
"""

from __future__ import annotations

from typing import Literal

from shapewise.errors import InputError
from shapewise.hardware.catalog import DTYPE_BYTES, canonical_dtype
from shapewise.model.params import check_tp, count_params
from shapewise.model.shape import ModelShape, check_bool, check_int, resolve_seq_len

Optimizer = Literal["adam", "adamw", "sgd"]

#: fp32 optimizer state per parameter: Adam's m and v; SGD's momentum buffer
OPTIMIZER_STATE_BYTES: dict[str, int] = {"adam": 8, "adamw": 8, "sgd": 4}
#: fp32 master copy of the weights kept by mixed-precision training (none when training in fp32)
MASTER_WEIGHT_BYTES = 4
#: training dtypes: weights, gradients and saved activations are stored in them. fp8 recipes
#: keep bf16 weights and most saved activations, so they are sized as 'bf16' here.
TRAINING_DTYPES = ("fp32", "tf32", "bf16", "fp16")


def _training_dtype(dtype: str) -> int:
    key = canonical_dtype(dtype)
    if key not in TRAINING_DTYPES:
        raise InputError(
            f"dtype: {key} is not a storage type for training "
            f"(one of {', '.join(TRAINING_DTYPES)}); fp8 recipes keep bf16 weights: pass 'bf16'"
        )
    return DTYPE_BYTES[key]


def activation_bytes_per_layer(shape: ModelShape, *, micro_batch: int, seq_len: int | None = None,
                               tp: int = 1, dtype: str = "bf16", dropout: bool = True) -> int:
    """Bytes one layer stores for its backward (no recompute), per GPU; see the module doc."""
    b = check_int("micro_batch", micro_batch)
    s = resolve_seq_len(shape, seq_len)
    check_tp(shape, tp)
    e = _training_dtype(dtype)
    check_bool("dropout", dropout)
    h, f = shape.hidden_size, shape.ffn_size
    kv = shape.kv_heads * shape.head_dim
    sb = s * b
    # replicated on every TP rank (no sequence parallelism)
    replicated = (
        2 * e * sb * h  # inputs of the two norms
        + e * sb * h  # QKV GEMM input (norm output)
        + e * sb * h  # MLP first GEMM input (norm output)
        + (2 * sb * h if dropout else 0)  # 1-byte masks after attention and after the MLP
    )
    # split across TP ranks (heads and FFN columns)
    mlp = (3 if shape.activation == "swiglu" else 2) * e * sb * f  # gate, up, product | in, out
    q = shape.q_size  # a·d (= h unless the head dim is decoupled)
    split = (
        e * sb * (q + 2 * kv)  # Q, K, V (what FlashAttention reads back)
        + e * sb * q  # attention output = output-projection input
        + mlp
    )
    return replicated + split // tp


def memory_per_gpu(shape: ModelShape, *, micro_batch: int, seq_len: int | None = None,
                   tp: int = 1, dtype: str = "bf16", recompute: bool = False,
                   optimizer: Optimizer = "adam", dropout: bool = True) -> dict[str, int]:
    """Bytes on one GPU of a tensor-parallel group of ``tp`` for one training micro-batch.

    Keys: ``weights`` and ``gradients`` (in ``dtype``), ``master_weights`` (fp32 copy, 4
    bytes/param, none when ``dtype`` is fp32), ``optimizer_states`` (Adam m and v: 8
    bytes/param), ``activations`` (the layers, Korthikanti et al. 2022 with FlashAttention,
    plus the embedding dropout mask), ``logits`` (output layer: final-norm and GEMM inputs
    and the fp32 logits of the cross-entropy, vocab-parallel), ``total`` (their sum).

    No data-parallel sharding (ZeRO/FSDP) or pipeline parallelism; no framework workspace,
    allocator fragmentation or CUDA context, so leave headroom.

    >>> from shapewise.model.presets import get_preset
    >>> m = memory_per_gpu(get_preset("llama-2-7b"), micro_batch=1, seq_len=4096)
    >>> m["weights"] == 2 * 6738415616, m["optimizer_states"] == 8 * 6738415616
    (True, True)
    """
    b = check_int("micro_batch", micro_batch)
    s = resolve_seq_len(shape, seq_len)
    e = _training_dtype(dtype)
    check_bool("recompute", recompute)
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZER_STATE_BYTES:
        raise InputError(
            f"optimizer: {optimizer!r} is not known; known: {', '.join(OPTIMIZER_STATE_BYTES)}"
        )
    n = count_params(shape, tp=tp)  # checks tp
    h, L = shape.hidden_size, shape.num_hidden_layers

    layer = activation_bytes_per_layer(shape, micro_batch=b, seq_len=s, tp=tp, dtype=dtype,
                                       dropout=dropout)
    # recompute: each layer's input (replicated), plus one layer rebuilt during its backward
    activations = L * e * s * b * h + layer if recompute else L * layer
    if dropout:
        activations += s * b * h  # 1-byte mask of the dropout after the embeddings

    if shape.arch == "vit":
        heads = (1 if shape.num_labels else 0) + (1 if shape.pooler else 0)
        logits = (e * s * b * h  # final norm input
                  + heads * e * b * h  # classifier / pooler input: the class token only
                  + 4 * b * shape.num_labels)  # type: ignore[operator]  # fp32 logits
    else:
        logits = (2 * e * s * b * h  # final norm input and logits GEMM input
                  + 4 * s * b * shape.vocab_size // tp)  # type: ignore[operator]  # fp32 logits

    out = {
        "weights": e * n,
        "gradients": e * n,
        "master_weights": 0 if e >= MASTER_WEIGHT_BYTES else MASTER_WEIGHT_BYTES * n,
        "optimizer_states": OPTIMIZER_STATE_BYTES[optimizer] * n,
        "activations": activations,
        "logits": logits,
    }
    out["total"] = sum(out.values())
    return out
