"""Exact parameter counts, tensor by tensor, as the Hugging Face models hold them.

Every parameter tensor of the model is listed once by :func:`param_tensors` with its
element count, its category and whether Megatron-style tensor parallelism shards it. The
counts below sum that list; nothing is approximated. Per layer, with h hidden, a heads of
d = h/a dims, g key/value heads, f MLP width:

    attention  q: h·h   k: h·g·d   v: h·g·d   o: h·h        (+ h, g·d, g·d biases if qkv_bias,
                                                             + h if bias)
    mlp        gelu: h·f + f·h (+ f + h biases)   swiglu: 3·h·f (+ 2f + h biases)
    norms      2 per layer: 2h each for LayerNorm with bias, h for RMSNorm

plus the final norm, the token (or patch) embedding, learned positions, and the output
layer (untied: v·h; tied: none, it reuses the embedding). So a bias-free MHA layer with
f = 4h has 12h² weights: GPT-2 small's 12 layers hold 12·(12·768² + 13·768) = 85,054,464.

>>> from shapewise.model.presets import get_preset
>>> count_params(get_preset("llama-2-7b"))
6738415616
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from shapewise.errors import InputError
from shapewise.model.shape import ModelShape

Category = Literal["embeddings", "attention", "mlp", "norms", "head"]
CATEGORIES: tuple[Category, ...] = ("embeddings", "attention", "mlp", "norms", "head")


class ParamTensor(NamedTuple):
    """One parameter tensor (per layer ones carry ``layers = L``)."""

    name: str
    """Hugging Face-like name, e.g. 'layers.*.self_attn.k_proj.weight'"""
    numel: int
    """elements in one copy"""
    layers: int
    """copies: L for per-layer tensors, 1 otherwise"""
    category: Category
    sharded: bool
    """split across tensor-parallel ranks (column/row-parallel weights, vocab-parallel
    embeddings); False: every rank holds a full copy (norms, row-parallel biases, ...)"""


def _norm(shape: ModelShape, name: str, layers: int) -> list[ParamTensor]:
    h = shape.hidden_size
    out = [ParamTensor(f"{name}.weight", h, layers, "norms", False)]
    if shape.norm == "layernorm" and shape.bias:
        out.append(ParamTensor(f"{name}.bias", h, layers, "norms", False))
    return out


def _linear(name: str, fan_in: int, fan_out: int, layers: int, category: Category,
            bias: bool, parallel: Literal["column", "row", "none"]) -> list[ParamTensor]:
    # Megatron: a column-parallel linear splits its output dim, bias included; a
    # row-parallel one splits its input dim and keeps the (output-sized) bias whole.
    out = [ParamTensor(f"{name}.weight", fan_in * fan_out, layers, category, parallel != "none")]
    if bias:
        out.append(ParamTensor(f"{name}.bias", fan_out, layers, category, parallel == "column"))
    return out


def param_tensors(shape: ModelShape) -> list[ParamTensor]:
    """Every parameter tensor of ``shape``, embeddings first, output layer last."""
    h, L, f = shape.hidden_size, shape.num_hidden_layers, shape.ffn_size
    kv = shape.kv_heads * shape.head_dim  # g·d columns for each of K and V (GQA)
    t: list[ParamTensor] = []

    # -- embeddings
    if shape.arch == "vit":
        # Conv2d(C, h, kernel=stride=p) is a GEMM over flattened patches: (C·p²) x h, + bias.
        c, p = shape.num_channels, shape.patch_size
        t += _linear("embeddings.patch_embeddings.projection", c * p * p, h, 1,  # type: ignore[operator]
                     "embeddings", shape.bias, "none")  # type: ignore[arg-type]
        if shape.use_class_token:
            t.append(ParamTensor("embeddings.cls_token", h, 1, "embeddings", False))
        positions = shape.seq_len  # one learned row per token, class token included
    else:
        # vocab-parallel: each rank holds v/t rows
        t.append(ParamTensor("embed_tokens.weight", shape.vocab_size * h, 1,  # type: ignore[operator]
                             "embeddings", True))
        positions = shape.max_position_embeddings  # type: ignore[assignment]
    if shape.position_embedding == "learned":  # rotary and 'none' have no parameters
        t.append(ParamTensor("position_embeddings", positions * h, 1, "embeddings", False))

    # -- transformer layers (pre-norm: one norm before attention, one before the MLP)
    t += _norm(shape, "layers.*.input_layernorm", L)
    q_bias = bool(shape.qkv_bias)
    q = shape.q_size  # a·d: h unless the head dim is decoupled
    t += _linear("layers.*.self_attn.q_proj", h, q, L, "attention", q_bias, "column")
    t += _linear("layers.*.self_attn.k_proj", h, kv, L, "attention", q_bias, "column")
    t += _linear("layers.*.self_attn.v_proj", h, kv, L, "attention", q_bias, "column")
    t += _linear("layers.*.self_attn.o_proj", q, h, L, "attention", bool(shape.bias), "row")
    t += _norm(shape, "layers.*.post_attention_layernorm", L)
    m_bias = bool(shape.mlp_bias)
    if shape.activation == "swiglu":
        t += _linear("layers.*.mlp.gate_proj", h, f, L, "mlp", m_bias, "column")
    t += _linear("layers.*.mlp.up_proj", h, f, L, "mlp", m_bias, "column")
    t += _linear("layers.*.mlp.down_proj", f, h, L, "mlp", m_bias, "row")
    t += _norm(shape, "norm", 1)  # the final norm after the last layer

    # -- output layer
    if shape.arch == "vit":
        if shape.pooler:  # ViTModel: tanh(dense(h x h)) on the class token
            t += _linear("pooler.dense", h, h, 1, "head", bool(shape.bias), "none")
        if shape.num_labels:
            t += _linear("classifier", h, shape.num_labels, 1, "head", bool(shape.bias), "none")
    elif not shape.tie_word_embeddings:  # tied: the logits GEMM reuses embed_tokens
        t.append(ParamTensor("lm_head.weight", shape.vocab_size * h, 1,  # type: ignore[operator]
                             "head", True))
    return t


def check_tp(shape: ModelShape, tp: int) -> None:
    """InputError naming ``tp`` unless it is a positive int that splits heads, KV heads, FFN
    and vocabulary evenly (Megatron: whole heads and K/V groups per rank)."""
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise InputError(f"tp: must be a positive integer, got {tp!r}")
    if tp == 1:
        return
    rules = [
        ("num_attention_heads", shape.num_attention_heads),
        # Megatron requires whole K/V groups per rank (num_query_groups % tp == 0)
        ("num_key_value_heads", shape.kv_heads),
        ("intermediate_size", shape.ffn_size),
    ]
    if shape.vocab_size is not None:
        rules.append(("vocab_size", shape.vocab_size))
    for field, value in rules:
        if value % tp:
            hint = ""
            if field == "vocab_size":
                hint = f"; pad it: replace(vocab_size={shape.padded_vocab(64 * tp)})"
            raise InputError(f"tp: {tp} does not divide {field} {value}{hint}")


def count_params(shape: ModelShape, *, embedding: bool = True, tp: int = 1) -> int:
    """Exact parameter count.

    ``embedding=False`` leaves out the vocabulary-sized and positional tables, the usual
    "non-embedding" count (Kaplan et al. 2020; the Pythia suite's table): token and position
    embeddings, the untied output embedding (``lm_head``/``embed_out``, a v×h table too) and
    a ViT's patch embedding and class token. A ViT classifier is not an embedding and stays.

    ``tp > 1``: the parameters one tensor-parallel rank holds (sharded tensors divided by
    ``tp``, replicated ones whole). ``tp`` must divide heads, KV heads, FFN and vocabulary.
    """
    check_tp(shape, tp)
    total = 0
    for p in param_tensors(shape):
        if not embedding and (p.category == "embeddings"
                              or (p.category == "head" and shape.arch != "vit")):
            continue
        total += p.layers * (p.numel // tp if p.sharded else p.numel)
    return total


def param_breakdown(shape: ModelShape) -> dict[str, int]:
    """Parameters per category: embeddings, attention, mlp, norms, head (sums to the total).

    'head' is the untied output layer (0 when tied) or a ViT's classifier and pooler.
    """
    out = dict.fromkeys(CATEGORIES, 0)
    for p in param_tensors(shape):
        out[p.category] += p.layers * p.numel
    return out
