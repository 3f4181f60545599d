"""Read a Hugging Face ``config.json`` into a :class:`ModelShape`.

JSON only: the file is parsed, never executed, and nothing is downloaded. A field missing
from the file takes the default of the transformers config class for that model type (so
the shape is the model transformers would build), except the core sizes (hidden size,
heads, layers, vocabulary), which a real config always states and which are required here.

Errors are :class:`InputError` naming the file and the config's own field name
(``n_head`` for GPT-2, ``num_attention_heads`` elsewhere).

>>> shape = from_hf_config({"model_type": "llama", "hidden_size": 2048,
...     "num_attention_heads": 32, "num_key_value_heads": 4, "num_hidden_layers": 22,
...     "intermediate_size": 5632, "vocab_size": 32000})
>>> shape.arch, shape.num_key_value_heads
('llama', 4)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shapewise._io import read_json
from shapewise.errors import InputError
from shapewise.model.loaded import (
    HF_ATTN_IMPLEMENTATIONS,
    LoadedShape,
    missing,
    stated_attention_backend,
    typo_notes,
)
from shapewise.model.shape import ModelShape, check_bool
from shapewise.model.windows import hf_windows

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a config.json is KBs (ViT's, with 1000 labels: 72 KB)

_REQUIRED = object()

ConfigReader = Callable[[Mapping[str, Any]], tuple[dict[str, Any], dict[str, str]]]


def _get(cfg: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    if key in cfg and cfg[key] is not None:
        return cfg[key]
    if default is _REQUIRED:  # with the config's own near-miss of it, if it has one
        raise InputError(missing(key, cfg, "the config must state it"))
    return default


def _flag(cfg: Mapping[str, Any], key: str, default: bool) -> bool:
    return check_bool(key, _get(cfg, key, default))


# ---------------------------------------------------------------- one reader per family
# Each returns (ModelShape fields, {ModelShape field: config field} for error messages).
def _gpt2(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    # GPT2Config stores the sizes under its own names (attribute_map in transformers).
    fields = {
        "arch": "gpt",
        "hidden_size": _get(cfg, "n_embd"),
        "num_attention_heads": _get(cfg, "n_head"),
        "num_hidden_layers": _get(cfg, "n_layer"),
        "intermediate_size": _get(cfg, "n_inner", None),  # null: 4 * n_embd
        "vocab_size": _get(cfg, "vocab_size"),
        "max_position_embeddings": _get(cfg, "n_positions", 1024),
        "tie_word_embeddings": _flag(cfg, "tie_word_embeddings", True),
        "position_embedding": "learned",
    }
    names = {"hidden_size": "n_embd", "num_attention_heads": "n_head",
             "num_hidden_layers": "n_layer", "intermediate_size": "n_inner",
             "max_position_embeddings": "n_positions"}
    return fields, names


def _gpt_neox(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    if not _flag(cfg, "attention_bias", True):
        # would drop the q/k/v *and* dense biases while the MLP keeps its own
        raise InputError("attention_bias: false is not modelled for gpt_neox")
    fields = {
        "arch": "gpt",
        "hidden_size": _get(cfg, "hidden_size"),
        "num_attention_heads": _get(cfg, "num_attention_heads"),
        "num_hidden_layers": _get(cfg, "num_hidden_layers"),
        "intermediate_size": _get(cfg, "intermediate_size"),
        "vocab_size": _get(cfg, "vocab_size"),
        "max_position_embeddings": _get(cfg, "max_position_embeddings", 2048),
        "tie_word_embeddings": _flag(cfg, "tie_word_embeddings", False),  # separate embed_out
        "position_embedding": "rotary",
        "rotary_pct": _get(cfg, "rotary_pct", 0.25),
        "parallel_residual": _flag(cfg, "use_parallel_residual", True),
    }
    return fields, {"parallel_residual": "use_parallel_residual"}


def _llama_like(cfg: Mapping[str, Any], *, max_positions: int) -> dict[str, Any]:
    h, a = _get(cfg, "hidden_size"), _get(cfg, "num_attention_heads")
    return {
        "arch": "llama",
        "hidden_size": h,
        "num_attention_heads": a,
        # transformers: head_dim or hidden_size // num_attention_heads (Mistral-NeMo and
        # Qwen3 state a head_dim that differs from it)
        "head_dim": _get(cfg, "head_dim", None),
        "num_key_value_heads": _get(cfg, "num_key_value_heads", a),  # absent: MHA
        "num_hidden_layers": _get(cfg, "num_hidden_layers"),
        "intermediate_size": _get(cfg, "intermediate_size"),
        "vocab_size": _get(cfg, "vocab_size"),
        "max_position_embeddings": _get(cfg, "max_position_embeddings", max_positions),
        "tie_word_embeddings": _flag(cfg, "tie_word_embeddings", False),
    }


def _llama(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    fields = _llama_like(cfg, max_positions=2048)
    attention_bias = _flag(cfg, "attention_bias", False)  # q, k, v and o together
    fields.update(bias=attention_bias, qkv_bias=attention_bias,
                  mlp_bias=_flag(cfg, "mlp_bias", False))
    return fields, {"bias": "attention_bias", "qkv_bias": "attention_bias"}


def _mistral(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    fields = _llama_like(cfg, max_positions=4096 * 32)
    # transformers' MistralConfig defaults the window to 4096 (Mistral-7B-v0.1) on every
    # layer; a config that states null (v0.2 onwards) means full attention
    fields.update(hf_windows(cfg, "mistral"))
    return fields, {}


def _qwen2(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    fields = _llama_like(cfg, max_positions=32768)
    fields["qkv_bias"] = True  # Qwen2Attention: q/k/v_proj have biases, o_proj has none
    if _flag(cfg, "use_sliding_window", False):
        # the layers from max_window_layers on are windowed (Qwen2Config's layer_types)
        fields.update(hf_windows(cfg, "qwen2"))
    elif cfg.get("layer_types") is not None:  # Qwen2Config drops the window: all full
        fields["layer_types"] = cfg["layer_types"]
    return fields, {}


#: the gated-GELU activations Gemma configs state (transformers' ACT2FN names)
_GELUS = ("gelu_pytorch_tanh", "gelu", "gelu_new", "gelu_fast", "gelu_python")


def _gemma(cfg: Mapping[str, Any], model_type: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Gemma 2 and Gemma 3 (text): a gated GELU MLP of three matrices (gate, up, down),
    priced as the gated 'swiglu' MLP, whose matrices, FLOPs and saved activations it shares
    (the activation's memory-bound pass is priced as SwiGLU's); four RMSNorms per layer
    (sandwich_norm); a stated head dim (256); tied embeddings; Gemma 3 adds per-head q/k
    RMSNorm. Logit soft-capping (Gemma 2) is not priced: an element-wise tanh."""
    act = _get(cfg, "hidden_activation", _get(cfg, "hidden_act", "gelu_pytorch_tanh"))
    if act not in _GELUS:
        raise InputError(f"hidden_activation: {act!r} is not modelled for {model_type} "
                         f"(one of {', '.join(_GELUS)})")
    if _flag(cfg, "use_bidirectional_attention", False):
        raise InputError(f"use_bidirectional_attention: true (an encoder) is not modelled "
                         f"for {model_type}")
    v3 = model_type == "gemma3_text"
    fields = _llama_like(cfg, max_positions=131072 if v3 else 8192)
    attention_bias = _flag(cfg, "attention_bias", False)  # q, k, v and o together
    fields.update(
        head_dim=_get(cfg, "head_dim", 256),
        tie_word_embeddings=_flag(cfg, "tie_word_embeddings", True),
        bias=attention_bias, qkv_bias=attention_bias, mlp_bias=False,
        activation="swiglu", sandwich_norm=True, qk_norm="head" if v3 else "none",
        **hf_windows(cfg, model_type),
    )
    return fields, {"bias": "attention_bias", "qkv_bias": "attention_bias",
                    "activation": "hidden_activation"}


def _cohere2(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Cohere 2 (Command R7B): attention and a SwiGLU MLP in parallel on one weight-only
    LayerNorm per layer (shared_norm), tied embeddings, the head dim h / a (Cohere2Config
    sets it so). Not priced: the logit scale (an element-wise multiply), and that the
    full-attention layers skip the rotary embedding (NoPE)."""
    act = _get(cfg, "hidden_act", "silu")
    if act != "silu":
        raise InputError(f"hidden_act: {act!r} is not modelled for cohere2 (silu)")
    fields = _llama_like(cfg, max_positions=8192)
    attention_bias = _flag(cfg, "attention_bias", False)
    fields.update(
        head_dim=None, tie_word_embeddings=_flag(cfg, "tie_word_embeddings", True),
        norm="layernorm", bias=attention_bias, qkv_bias=attention_bias, mlp_bias=False,
        parallel_residual=True, shared_norm=True, **hf_windows(cfg, "cohere2"),
    )
    return fields, {"bias": "attention_bias", "qkv_bias": "attention_bias"}


def _vit(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    archs = _get(cfg, "architectures", ["ViTForImageClassification"])
    if not isinstance(archs, list) or not archs:
        raise InputError(f"architectures: expected a list of class names, got {archs!r}")
    if archs[0] == "ViTModel":  # the backbone: a pooler, no classifier
        num_labels, pooler = 0, True
    elif archs[0] == "ViTForImageClassification":  # no pooler, a classifier
        if "num_labels" in cfg:
            num_labels = cfg["num_labels"]
        elif "id2label" in cfg:
            id2label = cfg["id2label"]
            if not isinstance(id2label, dict):
                raise InputError(f"id2label: expected an object, got {type(id2label).__name__}")
            num_labels = len(id2label)  # what transformers does: num_labels = len(id2label)
        else:
            num_labels = 2  # PretrainedConfig's default
        pooler = False
    else:
        raise InputError(
            f"architectures: {archs[0]!r} is not modelled; "
            f"supported: ViTForImageClassification, ViTModel"
        )
    fields = {
        "arch": "vit",
        "hidden_size": _get(cfg, "hidden_size"),
        "num_attention_heads": _get(cfg, "num_attention_heads"),
        "num_hidden_layers": _get(cfg, "num_hidden_layers"),
        "intermediate_size": _get(cfg, "intermediate_size", 3072),
        "image_size": _get(cfg, "image_size", 224),
        "patch_size": _get(cfg, "patch_size", 16),
        "num_channels": _get(cfg, "num_channels", 3),
        # HF ViT: qkv_bias covers q/k/v only; the output dense and the MLP always have biases
        "qkv_bias": _flag(cfg, "qkv_bias", True),
        "num_labels": num_labels,
        "pooler": pooler,
    }
    return fields, {}


_READERS: dict[str, ConfigReader] = {
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "vit": _vit,
    "gemma2": lambda cfg: _gemma(cfg, "gemma2"),
    "gemma3_text": lambda cfg: _gemma(cfg, "gemma3_text"),
    "cohere2": _cohere2,
}
#: the dense families read here; :func:`supported_model_types` adds registered ones
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_READERS)


def register_model_type(model_type: str, reader: ConfigReader) -> None:
    """Teach :func:`from_hf_config` another ``model_type``.

    The seam for families read in their own module (the MoE families: Mixtral, Qwen-MoE,
    DeepSeek, GPT-OSS): that module defines ``reader(cfg) -> (ModelShape fields, {field:
    config name})`` on the helpers above (``_get``, ``_flag``, ``_llama_like``), calls this,
    and is imported at the end of this module so every caller knows the family.
    """
    if model_type in _READERS:
        raise ValueError(f"model_type {model_type!r} already has a reader")
    _READERS[model_type] = reader


def supported_model_types() -> tuple[str, ...]:
    """Every ``model_type`` :func:`from_hf_config` reads, registered ones included."""
    return tuple(_READERS)


# ---------------------------------------------------------------------------- loading
class _Asked(Mapping[str, Any]):
    """The config as a reader sees it, remembering each field the reader asked for: a
    field it never asked for that is one typo from one it asked for and did not find is
    worth a note (the field it meant took its default)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self._data.get(key, default)

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _read(path: Path) -> Any:
    return read_json(path, limit=MAX_CONFIG_BYTES, what="a config.json")


def config_name(path: Path) -> str:
    """A model's name from its config's path: the folder of a ``config.json``, else the
    file's stem."""
    return path.parent.name if path.name == "config.json" else path.stem


def from_hf_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> ModelShape:
    """The shape of the model a Hugging Face config describes.

    ``source``: a ``config.json`` path, a model folder holding one, or the decoded dict.
    Supported ``model_type``: gpt2, gpt_neox, llama, mistral, qwen2, vit, gemma2,
    gemma3_text, cohere2 (and any registered with :func:`register_model_type`).
    """
    return read_hf_config(source).shape


def read_hf_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> LoadedShape:
    """:func:`from_hf_config`, with what was assumed while reading (``notes``)."""
    if isinstance(source, Mapping):
        return hf_shape(source)
    if not isinstance(source, str | os.PathLike):
        raise InputError(f"config: expected a path or a dict, got {type(source).__name__}")
    path = Path(source)
    if os.path.isdir(path):  # a model folder: its config.json (False on bad paths)
        path = path / "config.json"
    return hf_shape(_read(path), path=str(path), default_name=config_name(path))


def hf_shape(cfg: Any, *, path: str = "", default_name: str = "") -> LoadedShape:
    """The shape of a decoded ``config.json`` (``path``: the file it came from, for errors)."""
    where = f"{path}: " if path else ""
    if not isinstance(cfg, Mapping):
        raise InputError(f"{where}config: expected a JSON object, got {type(cfg).__name__}")

    model_type = cfg.get("model_type")
    reader = _READERS.get(model_type) if isinstance(model_type, str) else None
    if reader is None:
        raise InputError(
            f"{where}model_type: {model_type!r} is not supported; "
            f"supported: {', '.join(_READERS)}"
        )
    names: dict[str, str] = {}
    asked = _Asked(cfg)
    try:
        fields, names = reader(asked)
        name = cfg.get("_name_or_path")
        fields["name"] = name if isinstance(name, str) and name else default_name
        shape = ModelShape(**fields)
    except InputError as exc:
        # ModelShape speaks its own field names; say them as this config spells them
        message = str(exc)
        if names:
            pattern = r"\b(" + "|".join(map(re.escape, names)) + r")\b"
            message = re.sub(pattern, lambda m: names[m.group(1)], message)
        raise InputError(where + message) from None
    notes = typo_notes([k for k in cfg if isinstance(k, str)], asked.asked)
    impl = cfg.get("attn_implementation", cfg.get("_attn_implementation"))
    backend, note = stated_attention_backend(impl, HF_ATTN_IMPLEMENTATIONS,
                                             "attn_implementation")
    notes += [note] if note else []
    return LoadedShape(shape=shape, source="hf", path=path, attention_backend=backend,
                       notes=tuple(notes))


# The mixture-of-experts families, read in shapewise/model/moe.py (which imports nothing here).
from shapewise.model.moe import MOE_READERS  # noqa: E402

for _model_type, _reader in MOE_READERS.items():
    register_model_type(_model_type, _reader)
