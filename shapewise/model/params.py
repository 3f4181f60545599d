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

A mixture-of-experts layer (``num_experts`` E, top-k, expert width f_e, shared width f_s)
holds instead of the MLP, as Hugging Face's models do:

    router     h·E (+ E bias: GPT-OSS)
    experts    E · 3·h·f_e SwiGLU (+ E·(2f_e + h) biases: GPT-OSS)
    shared     3·h·f_s, one MLP for all shared experts (+ h, the Qwen2-MoE shared-expert gate)

and the first ``num_dense_layers`` layers keep the dense MLP. *Active* parameters are what one
token uses: everything but the routed experts, of which k of E (the router runs for every
token). Multi-head latent attention (DeepSeek, a heads, d_qk = nope + rope, d_v, ranks r_q,
r_kv) replaces q, k, v by q_a h·r_q + q_b r_q·a·d_qk (or one q_proj h·a·d_qk when r_q is
unset), kv_a h·(r_kv + rope) and kv_b r_kv·a·(nope + d_v), with an RMSNorm on each latent;
o is a·d_v·h. See :mod:`shapewise.model.moe` for the exact counts of published models.

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
    routed: bool = False
    """the routed experts' tensor, all E experts in one count: a token uses k/E of it"""
    matmul: bool = False
    """a weight matrix that a GEMM multiplies every token by (its elements are that GEMM's
    multiply-adds per token); False: biases, norms, tables, sinks"""


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
    out = [ParamTensor(f"{name}.weight", fan_in * fan_out, layers, category, parallel != "none",
                       matmul=True)]
    if bias:
        out.append(ParamTensor(f"{name}.bias", fan_out, layers, category, parallel == "column"))
    return out


def _mlp(shape: ModelShape, name: str, f: int, layers: int) -> list[ParamTensor]:
    """A dense MLP of width f (GELU: up, down; SwiGLU: gate, up, down)."""
    h, bias = shape.hidden_size, bool(shape.mlp_bias)
    t: list[ParamTensor] = []
    if shape.activation == "swiglu":
        t += _linear(f"{name}.gate_proj", h, f, layers, "mlp", bias, "column")
    t += _linear(f"{name}.up_proj", h, f, layers, "mlp", bias, "column")
    t += _linear(f"{name}.down_proj", f, h, layers, "mlp", bias, "row")
    return t


def _attention(shape: ModelShape, L: int) -> list[ParamTensor]:
    h, a = shape.hidden_size, shape.num_attention_heads
    q = shape.q_size  # a·d: h unless the head dim is decoupled
    t: list[ParamTensor] = []
    if shape.mla:
        r_kv, rope = shape.kv_lora_rank, shape.qk_rope_head_dim
        nope = shape.head_dim - rope  # type: ignore[operator]
        if shape.q_lora_rank is None:
            t += _linear("layers.*.self_attn.q_proj", h, q, L, "attention", False, "column")
        else:  # the down-projection is replicated across TP ranks (Megatron MLA)
            r_q = shape.q_lora_rank
            t += _linear("layers.*.self_attn.q_a_proj", h, r_q, L, "attention", False, "none")
            t.append(ParamTensor("layers.*.self_attn.q_a_layernorm.weight", r_q, L, "norms",
                                 False))
            t += _linear("layers.*.self_attn.q_b_proj", r_q, q, L, "attention", False, "column")
        # the K/V latent and the one rotary key shared by all heads: h -> r_kv + rope
        t += _linear("layers.*.self_attn.kv_a_proj_with_mqa", h, r_kv + rope, L,  # type: ignore[operator]
                     "attention", False, "none")
        t.append(ParamTensor("layers.*.self_attn.kv_a_layernorm.weight", r_kv, L, "norms",  # type: ignore[arg-type]
                             False))
        t += _linear("layers.*.self_attn.kv_b_proj", r_kv, a * (nope + shape.v_dim), L,  # type: ignore[arg-type]
                     "attention", False, "column")
    else:
        kv = shape.kv_heads * shape.head_dim  # g·d columns for each of K and V (GQA)
        q_bias = bool(shape.qkv_bias)
        t += _linear("layers.*.self_attn.q_proj", h, q, L, "attention", q_bias, "column")
        t += _linear("layers.*.self_attn.k_proj", h, kv, L, "attention", q_bias, "column")
        t += _linear("layers.*.self_attn.v_proj", h, kv, L, "attention", q_bias, "column")
    t += _linear("layers.*.self_attn.o_proj", shape.v_size, h, L, "attention", bool(shape.bias),
                 "row")
    if shape.qk_norm != "none":  # RMSNorm weights only
        d = shape.head_dim
        full = shape.qk_norm == "full"
        t.append(ParamTensor("layers.*.self_attn.q_norm.weight", q if full else d, L,  # type: ignore[arg-type]
                             "norms", False))
        t.append(ParamTensor("layers.*.self_attn.k_norm.weight",
                             shape.kv_heads * d if full else d, L, "norms", False))  # type: ignore[operator]
    if shape.attention_sinks:  # one learned logit per query head
        t.append(ParamTensor("layers.*.self_attn.sinks", a, L, "attention", True))
    return t


def _moe(shape: ModelShape, L: int) -> list[ParamTensor]:
    """Router, routed experts and shared experts of ``L`` MoE layers."""
    h, e, f = shape.hidden_size, shape.num_experts, shape.moe_intermediate_size
    t = _linear("layers.*.mlp.gate", h, e, L, "mlp", shape.router_bias, "none")  # type: ignore[arg-type]
    # The experts of one layer as transformers holds them: one (E, ·, ·) tensor per matrix.
    up = (2 if shape.activation == "swiglu" else 1) * f  # type: ignore[operator]
    t.append(ParamTensor("layers.*.mlp.experts.gate_up_proj", e * h * up, L, "mlp", True,  # type: ignore[operator]
                         routed=True, matmul=True))
    t.append(ParamTensor("layers.*.mlp.experts.down_proj", e * f * h, L, "mlp", True,  # type: ignore[operator]
                         routed=True, matmul=True))
    if shape.mlp_bias:
        t.append(ParamTensor("layers.*.mlp.experts.gate_up_proj_bias", e * up, L, "mlp", True,  # type: ignore[operator]
                             routed=True))
        t.append(ParamTensor("layers.*.mlp.experts.down_proj_bias", e * h, L, "mlp", False,  # type: ignore[operator]
                             routed=True))
    if shape.num_shared_experts:
        t += _mlp(shape, "layers.*.mlp.shared_experts", shape.shared_expert_intermediate_size,  # type: ignore[arg-type]
                  L)
        if shape.shared_expert_gate:
            t += _linear("layers.*.mlp.shared_expert_gate", h, 1, L, "mlp", False, "none")
    return t


def param_tensors(shape: ModelShape) -> list[ParamTensor]:
    """Every parameter tensor of ``shape``, embeddings first, output layer last."""
    h, L, f = shape.hidden_size, shape.num_hidden_layers, shape.ffn_size
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
    t += _attention(shape, L)
    if not shape.shared_norm:  # Cohere: the one input norm feeds the MLP too
        t += _norm(shape, "layers.*.post_attention_layernorm", L)
    if shape.sandwich_norm:  # Gemma 2/3: the MLP's input norm and its output's norm
        t += _norm(shape, "layers.*.pre_feedforward_layernorm", L)
        t += _norm(shape, "layers.*.post_feedforward_layernorm", L)
    dense = shape.num_dense_layers if shape.is_moe else L
    if dense:
        t += _mlp(shape, "layers.*.mlp", f, dense)
    if shape.is_moe:
        t += _moe(shape, shape.moe_layers)
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
    if shape.is_moe:  # Megatron's expert tensor parallelism splits each expert's FFN
        rules.append(("moe_intermediate_size", shape.moe_intermediate_size))  # type: ignore[arg-type]
        if shape.num_shared_experts:
            rules.append(("shared_expert_intermediate_size",
                          shape.shared_expert_intermediate_size))  # type: ignore[arg-type]
    if shape.vocab_size is not None:
        rules.append(("vocab_size", shape.vocab_size))
    for field, value in rules:
        if value % tp:
            hint = ""
            if field == "vocab_size":
                hint = f"; pad it: replace(vocab_size={shape.padded_vocab(64 * tp)})"
            raise InputError(f"tp: {tp} does not divide {field} {value}{hint}")


def active_numel(shape: ModelShape, p: ParamTensor) -> int:
    """Elements of ``p`` one token uses: k/E of a routed-experts tensor, else all."""
    if not p.routed:
        return p.numel
    return p.numel // shape.num_experts * shape.num_experts_per_tok  # type: ignore[operator]


def count_params(shape: ModelShape, *, embedding: bool = True, tp: int = 1,
                 active: bool = False) -> int:
    """Exact parameter count.

    ``active=True``: the parameters one token uses, for a mixture of experts: all but the
    routed experts, of which ``num_experts_per_tok`` of ``num_experts`` (the router and the
    shared experts run for every token). A dense model's active count is its total.

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
        numel = active_numel(shape, p) if active else p.numel
        total += p.layers * (numel // tp if p.sharded else numel)
    return total


def param_breakdown(shape: ModelShape) -> dict[str, int]:
    """Parameters per category: embeddings, attention, mlp, norms, head (sums to the total).

    'head' is the untied output layer (0 when tied) or a ViT's classifier and pooler.
    """
    out = dict.fromkeys(CATEGORIES, 0)
    for p in param_tensors(shape):
        out[p.category] += p.layers * p.numel
    return out
