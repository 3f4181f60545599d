"""Read a model's shape, and the run settings they state, from Megatron-LM arguments.

A dict of arguments, or the JSON file of one: ``--hidden-size`` and ``hidden_size``
spellings alike. The vocabulary is padded as Megatron pads it (``make_vocab_size_divisible_by``
× tp) and the SwiGLU FFN default follows Megatron. Every error is an :class:`InputError`
naming the field as Megatron spells it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shapewise.errors import InputError
from shapewise.model.loaded import (
    MEGATRON_ATTENTION_BACKENDS,
    LoadedShape,
    missing,
    stated_attention_backend,
)
from shapewise.model.shape import ModelShape
from shapewise.model.windows import megatron_windows

_MEGATRON_MARKERS = ("num_layers", "ffn_hidden_size", "tensor_model_parallel_size",
                     "pipeline_model_parallel_size", "padded_vocab_size", "seq_length",
                     "make_vocab_size_divisible_by", "num_query_groups", "micro_batch_size")


def _norm_key(key: Any) -> str:
    return str(key).lstrip("-").replace("-", "_")


def looks_megatron(data: Mapping[str, Any]) -> bool:
    keys = {_norm_key(k) for k in data}
    return any(k in keys for k in _MEGATRON_MARKERS)


def _int(cfg: Mapping[str, Any], key: str, where: str, default: Any = None) -> Any:
    value = cfg.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{where}{key}: expected a positive integer, got {value!r}")
    return value


def _bool(cfg: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"{where}{key}: expected true or false, got {value!r}")
    return value


def read_megatron(args: Mapping[str, Any], *, where: str = "") -> LoadedShape:
    """A shape from Megatron-LM arguments (``--hidden-size`` or ``hidden_size`` keys).

    Read: hidden_size, num_attention_heads, num_layers (required); ffn_hidden_size (default
    4h, or Megatron's SwiGLU rule int(8h/3 / 64)·64); group_query_attention +
    num_query_groups; swiglu; normalization (LayerNorm/RMSNorm); position_embedding_type
    (learned_absolute/rope/none); rotary_percent; untie_embeddings_and_output_weights;
    disable_bias_linear; add_qkv_bias; max_position_embeddings; padded_vocab_size, or
    vocab_size padded to make_vocab_size_divisible_by (128) × tp as Megatron does;
    seq_length, micro_batch_size, tensor_model_parallel_size, pipeline_model_parallel_size
    (run settings); window_size and window_attn_skip_freq (sliding-window layers,
    :func:`shapewise.model.windows.megatron_windows`). Other arguments are ignored.
    """
    if not isinstance(args, Mapping):
        raise InputError(f"args: expected a mapping, got {type(args).__name__}")
    prefix = f"{where}: " if where else ""
    cfg = {_norm_key(k): v for k, v in args.items()}
    for key in ("hidden_size", "num_attention_heads", "num_layers"):
        if cfg.get(key) is None:
            raise InputError(prefix + missing(key, cfg, "Megatron-LM requires it"))
    h = _int(cfg, "hidden_size", prefix)
    a = _int(cfg, "num_attention_heads", prefix)
    L = _int(cfg, "num_layers", prefix)
    stated_tp = _int(cfg, "tensor_model_parallel_size", prefix)
    pp = _int(cfg, "pipeline_model_parallel_size", prefix)
    tp = stated_tp or 1
    swiglu = _bool(cfg, "swiglu", prefix, False)
    notes: list[str] = []
    kv = _int(cfg, "kv_channels", prefix)  # Megatron's head dim; absent: h / a
    if kv is None and h % a:
        raise InputError(f"{prefix}num_attention_heads: {a} does not divide hidden_size {h}")
    ffn = _int(cfg, "ffn_hidden_size", prefix)
    if ffn is None:
        ffn = int((4 * h * 2 / 3) / 64) * 64 if swiglu else 4 * h
        notes.append(f"ffn_hidden_size: {ffn} (Megatron's default"
                     + (" for SwiGLU, int(8h/3 / 64)·64)" if swiglu else ", 4h)"))
    g = a
    if _bool(cfg, "group_query_attention", prefix, False):
        g = _int(cfg, "num_query_groups", prefix, 1)
    padded = _int(cfg, "padded_vocab_size", prefix)
    if padded is None:
        vocab = _int(cfg, "vocab_size", prefix)
        if vocab is None:
            raise InputError(prefix + missing(
                "vocab_size", cfg, "Megatron takes it from the tokenizer; state vocab_size "
                "or padded_vocab_size"))
        divisible = _int(cfg, "make_vocab_size_divisible_by", prefix, 128)
        padded = -(-vocab // (divisible * tp)) * divisible * tp
        if padded != vocab:
            notes.append(f"vocab_size: {vocab} padded to {padded} as Megatron pads it "
                         f"(make_vocab_size_divisible_by {divisible} × tp {tp})")
    norm = cfg.get("normalization", "LayerNorm")
    norms = {"LayerNorm": "layernorm", "RMSNorm": "rmsnorm"}
    if norm not in norms:
        raise InputError(f"{prefix}normalization: must be LayerNorm or RMSNorm, got {norm!r}")
    pos = cfg.get("position_embedding_type", "learned_absolute")
    positions = {"learned_absolute": "learned", "rope": "rotary", "none": "none"}
    if pos not in positions:
        raise InputError(f"{prefix}position_embedding_type: must be one of "
                         f"{', '.join(positions)}, got {pos!r}")
    seq = _int(cfg, "seq_length", prefix)
    max_pos = _int(cfg, "max_position_embeddings", prefix, seq or 2048)
    bias = not _bool(cfg, "disable_bias_linear", prefix, False)
    rotary = cfg.get("rotary_percent", 1.0)
    fields: dict[str, Any] = {
        "arch": "llama" if swiglu else "gpt",
        "hidden_size": h, "num_attention_heads": a, "num_key_value_heads": g, "head_dim": kv,
        "num_hidden_layers": L, "intermediate_size": ffn, "vocab_size": padded,
        "max_position_embeddings": max_pos,
        "tie_word_embeddings": not _bool(cfg, "untie_embeddings_and_output_weights",
                                         prefix, False),
        "position_embedding": positions[pos], "norm": norms[norm],
        "activation": "swiglu" if swiglu else "gelu",
        "bias": bias, "qkv_bias": bias or _bool(cfg, "add_qkv_bias", prefix, False),
        "mlp_bias": bias, "rotary_pct": rotary, "name": str(cfg.get("name", "") or ""),
        **megatron_windows(cfg, L, prefix),  # window_size, window_attn_skip_freq
    }
    try:
        shape = ModelShape(**fields)
    except InputError as exc:
        message = str(exc)
        for ours, theirs in (("num_hidden_layers", "num_layers"),
                             ("intermediate_size", "ffn_hidden_size"),
                             ("num_key_value_heads", "num_query_groups"),
                             ("rotary_pct", "rotary_percent")):
            message = re.sub(rf"\b{ours}\b", theirs, message)
        raise InputError(prefix + message) from None
    backend, note = stated_attention_backend(cfg.get("attention_backend"),
                                             MEGATRON_ATTENTION_BACKENDS, "attention_backend")
    if backend is None and note is None and _bool(cfg, "use_flash_attn", prefix, False):
        backend, note = "fa2", "use_flash_attn: priced as the fa2 attention backend"
    notes += [note] if note else []
    return LoadedShape(shape=shape, source="megatron", path=where, tp=stated_tp,
                       pipeline_stages=pp, attention_backend=backend,
                       micro_batch=_int(cfg, "micro_batch_size", prefix), seq_len=seq,
                       notes=tuple(notes))
